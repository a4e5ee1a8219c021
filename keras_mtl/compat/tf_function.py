"""TensorFlow's eager internals: calling a loaded signature as one eager op,
and making its input tensors without `tf.constant`'s per-call checks.

`keras_mtl.saved_model.LoadedModel.run` checks `direct_call` against the
public call on its first use and keeps the public call where this private API
is missing, differs or answers differently; `tests/test_compat.py` has the
canaries that tell when it would. `tensor_maker` checks itself against
`tf.constant` when it is made and answers `tf.constant` where it differs.
"""

import numpy as np
import tensorflow as tf

# TensorFlow's executor that runs a function's kernels one after another on
# the calling thread (`tf.experimental.function_executor_type`).
SINGLE_THREADED_EXECUTOR = "SINGLE_THREADED_EXECUTOR"


def direct_call(function, executor_type=""):
    """`function(**tensors)` as the one eager op that the public call runs.

    A loaded signature's public call binds and casts its keyword arguments,
    resolves its captured variables and tables, and packs its outputs on
    every call (adult model, batch 1: 0.58 ms against 0.25 ms for this call;
    `benchmarks/serving_profile.py`). The server has already checked and
    converted the inputs, so this runs the signature's function by name with
    the inputs in placeholder order and the captures resolved once, as
    `ConcreteFunction._call_flat` does underneath.

    Args:
        function: A signature of a loaded SavedModel (a `ConcreteFunction`).
        executor_type: The executor that runs the function's graph: "" for
            TensorFlow's default, or `SINGLE_THREADED_EXECUTOR`, which runs
            the kernels on the calling thread. A graph that executor cannot
            run (old-style control flow, ops split across devices) fails on
            the first call.

    Returns:
        A function of a dict of tensors keyed by SignatureDef input name that
        returns the signature's dict of outputs.

    Raises:
        ValueError: The signature's inputs, captures or outputs are not what
            a direct call can feed (say, distributed variables).
    """
    from tensorflow.python.eager import context, execute
    from tensorflow.python.framework import ops

    arguments = {
        argument: spec.name or argument
        for argument, spec in function.structured_input_signature[1].items()
    }
    placeholders = [t.name.split(":")[0] for t in function.inputs[: len(arguments)]]
    if sorted(placeholders) != sorted(arguments):
        raise ValueError("placeholders do not match the signature's arguments")
    order = [arguments[placeholder] for placeholder in placeholders]
    captures = list(function.captured_inputs)
    if not all(isinstance(capture, ops.EagerTensor) for capture in captures):
        raise ValueError("captures that are not eager tensors")
    structure = function.structured_outputs
    if not isinstance(structure, dict):
        raise ValueError("a signature returns a dict of tensors")
    names = tf.nest.flatten({name: name for name in structure})
    count = len(function.outputs)
    if count != len(names):
        raise ValueError("outputs do not match the signature's output names")
    name = function._inference_function.name
    name = name.decode() if isinstance(name, bytes) else name
    eager = context.context()
    attrs = (
        "executor_type",
        executor_type,
        "config_proto",
        eager.function_call_options.config_proto_serialized,
    )
    run = execute.execute

    def call(tensors):
        inputs = [tensors[argument] for argument in order]
        inputs += captures
        return dict(zip(names, run(name, count, inputs, attrs, eager), strict=True))

    return call


def _constant(array, dtype):
    return tf.constant(array, dtype=dtype)


def tensor_maker():
    """A function `(numpy array, tf.DType) -> tf.Tensor` equal to `tf.constant`.

    `tf.constant` on a numpy array copies it, builds an `EagerTensor` after
    several layers of Python checks and places it on the current device with
    one more eager op (~8 us a tensor; a batch-1 request of the adult model
    has 12 inputs). This copies and builds it directly in host memory
    (~2 us), where a function call takes its inputs from anyway. Where
    TensorFlow's private names are missing or give another tensor for the
    probes below, it is `tf.constant` itself.
    """
    try:
        from tensorflow.python.eager import context
        from tensorflow.python.framework import ops

        eager_tensor = ops.EagerTensor
        eager = context.context()
        eager.ensure_initialized()
    except (ImportError, AttributeError):
        return _constant

    def make(array, dtype):
        if type(array) is not np.ndarray:
            return tf.constant(array, dtype=dtype)
        return eager_tensor(array.copy(), None, dtype.as_datatype_enum)

    probes = [
        (np.array([[1.5, -2.0]], np.float32), tf.float32),
        (np.array([3, 4], np.int64), tf.int64),
        (np.array([b"a", b"bc"], dtype=object), tf.string),
        (np.array(["x", "\u00e9"], dtype=object), tf.string),
    ]
    try:
        for array, dtype in probes:
            made, expected = make(array, dtype), tf.constant(array, dtype=dtype)
            if (
                made.dtype != expected.dtype
                or made.shape != expected.shape
                or not np.array_equal(made.numpy(), expected.numpy())
            ):
                return _constant
    except Exception:  # any change in the private API: keep tf.constant
        return _constant
    return make
