"""TensorFlow's `ConcreteFunction._call_flat`: calling a loaded signature
without the per-call keyword binding.

`keras_mtl.saved_model.LoadedModel.run` checks the flat call against the
public call on its first use and keeps the public call where this private API
is missing, differs or answers differently; `tests/test_compat.py` has the
canary that tells when it would.
"""


def flat_call(function):
    """`function(**tensors)` without TensorFlow's per-call argument binding.

    A loaded signature binds and casts its keyword arguments on every call,
    which took 0.2-0.3 ms of a 0.5 ms batch-1 call of the adult model; the
    server has already checked and converted them. This feeds the graph's
    placeholders in order through `ConcreteFunction._call_flat`.

    Args:
        function: A signature of a loaded SavedModel (a `ConcreteFunction`).

    Returns:
        A function of a dict of tensors keyed by SignatureDef input name that
        returns the signature's dict of outputs.
    """
    arguments = {
        argument: spec.name or argument
        for argument, spec in function.structured_input_signature[1].items()
    }
    placeholders = [t.name.split(":")[0] for t in function.inputs[: len(arguments)]]
    if sorted(placeholders) != sorted(arguments):
        raise ValueError("placeholders do not match the signature's arguments")
    order = [arguments[placeholder] for placeholder in placeholders]

    def call(tensors):
        return function._call_flat(
            [tensors[name] for name in order], function.captured_inputs
        )

    return call
