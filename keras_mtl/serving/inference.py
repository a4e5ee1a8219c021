"""TF Serving's Classify, Regress and MultiInference over tf.Example inputs.

A classify or regress signature (`export.classify_signatures`, or any
SavedModel with TF Serving's signatures of those kinds) takes one DT_STRING
input of serialized `tf.Example`s. A request's Examples (with a context
Example that every Example extends, or without) become that tensor, run
through `Predictor.predict` like a Predict call (so batching, deadlines and
model errors behave the same), and its outputs are checked as TF Serving
checks them: `classes` strings and `scores` floats, each `[batch, classes]`,
or `outputs` floats, `[batch]` or `[batch, 1]`. The gRPC service makes
`ClassificationResult` / `RegressionResult` protos of the answer
(`keras_mtl.serving.grpc_server`), the REST API JSON
(`keras_mtl.serving.json_response`); this module needs no
tensorflow-serving-api protos, so REST works without them.

Example:

```python
key, answer = classify_regress(predictor, servable, "classify_income", "classify",
                               serialize_examples(examples))
answer.labels, answer.scores  # [[b"<=50K", b">50K"], ...], [[0.8, 0.2], ...]
```
"""

import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from keras_mtl.saved_model import (
    CLASSES,
    CLASSIFY_METHOD,
    REGRESS_METHOD,
    SCORES,
    SIGNATURE,
)
from keras_mtl.saved_model import CLASSIFY_INPUTS as INPUTS
from keras_mtl.saved_model import REGRESS_OUTPUTS as OUTPUTS
from keras_mtl.serving.status import Code, ServingError, invalid_argument

METHODS = {"classify": CLASSIFY_METHOD, "regress": REGRESS_METHOD}
_KINDS = {CLASSIFY_METHOD: "classification", REGRESS_METHOD: "regression"}


@dataclasses.dataclass
class Classification:
    """A classify signature's answer: `labels` (rows of bytes, or None when
    it has no `classes` output) and `scores` (a float32 `[batch, classes]`
    array, or None when it has no `scores` output)."""

    labels: list | None
    scores: np.ndarray | None

    @property
    def rows(self):
        return len(self.labels) if self.labels is not None else len(self.scores)

    @property
    def width(self):
        return len(self.labels[0]) if self.labels is not None else self.scores.shape[1]


def serialize_examples(examples, context=None):
    """The serialized `tf.train.Example`s of a request, as an object array;
    with a `context` Example, each Example is merged over it (the Example's
    own value wins for a feature both have), as TF Serving does."""
    if not examples:
        raise invalid_argument("Input is empty.")
    prefix = context.SerializeToString() if context is not None else b""
    # Serialized protos concatenated parse as one message merged in order:
    # the Example's map entries replace the context's of the same key.
    return np.array(
        [prefix + example.SerializeToString() for example in examples], dtype=object
    )


def serialize_input(input_proto):
    """`serialize_examples` of a `tensorflow.serving.Input` proto."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return serialize_examples(input_proto.example_list.examples)
    if kind == "example_list_with_context":
        with_context = input_proto.example_list_with_context
        return serialize_examples(with_context.examples, with_context.context)
    raise invalid_argument("Input is empty.")


def check_signature(servable, signature_name, method_name, method_name_check=False):
    """(key, SignatureDef) of a classify or regress signature (`method_name`),
    or TF Serving's error for one that is not: with `method_name_check`
    (`--enable_signature_method_name_check`) its method name must be
    `method_name`; either way it must have TF Serving's shape: one input,
    `inputs`, and `classes` and/or `scores` (classify) or one `outputs`
    (regress)."""
    key = signature_name or SIGNATURE
    signature_def = servable.model.signature_defs.get(key)
    if signature_def is None:
        raise invalid_argument(f"No signature was found with the name: {key}")
    if method_name not in _KINDS:
        raise ServingError(
            Code.UNIMPLEMENTED, f"Unsupported signature method_name: {method_name}"
        )
    kind = _KINDS[method_name]
    if method_name_check and signature_def.method_name != method_name:
        raise invalid_argument(
            f"Expected {kind} signature method_name to be {method_name}. Was: "
            f"{signature_def.method_name}"
        )
    classify = method_name == CLASSIFY_METHOD
    outputs = set(signature_def.outputs)
    if len(signature_def.inputs) != 1:
        raise invalid_argument("Expected one input Tensor.")
    if classify and len(outputs) not in (1, 2):
        raise invalid_argument(
            f"Expected one or two output Tensors, found {len(outputs)}"
        )
    if not classify and len(outputs) != 1:
        raise invalid_argument("Expected one output Tensor.")
    if INPUTS not in signature_def.inputs:
        raise invalid_argument(
            f"No {kind} inputs found in SignatureDef: {_text(signature_def)}"
        )
    if classify and not outputs & {CLASSES, SCORES}:
        raise invalid_argument(
            "Expected classification signature outputs to contain at least one "
            f'of "{CLASSES}" or "{SCORES}". Signature was: {_text(signature_def)}'
        )
    if not classify and OUTPUTS not in outputs:
        raise invalid_argument(
            f"No regression outputs found in SignatureDef: {_text(signature_def)}"
        )
    return key, signature_def


def _text(signature_def):
    """A SignatureDef as TF Serving's messages print it (DebugString)."""
    return str(signature_def)


def _dtype_name(array):
    if array.dtype.kind in "OSU":
        return "DT_STRING"
    try:
        return types_pb2.DataType.Name(tf.as_dtype(array.dtype).as_datatype_enum)
    except TypeError:
        return array.dtype.name


def _shape_text(array):
    return "[" + ",".join(str(size) for size in array.shape) + "]"


def _checked_classes(name, array, rows, dtype, dtype_name):
    """A classify output (`classes` or `scores`) checked as TF Serving's
    PostProcessClassificationResult checks it."""
    if array.ndim != 2:
        raise invalid_argument(
            "Expected Tensor shape: [batch_size num_classes] but got "
            f"{_shape_text(array)}"
        )
    if not dtype(array):
        raise invalid_argument(
            f"Expected {name} Tensor of {dtype_name}. Got: {_dtype_name(array)}"
        )
    if array.shape[0] != rows:
        raise invalid_argument(
            f"Expected {name} output batch size of {rows}. Got: {array.shape[0]}"
        )
    return array


def classification(outputs, rows):
    """The `Classification` of a classify signature's `outputs`."""
    classes = outputs.get(CLASSES)
    scores = outputs.get(SCORES)
    if classes is not None:
        classes = _checked_classes(
            CLASSES,
            np.asarray(classes),
            rows,
            lambda array: array.dtype.kind in "OSU",
            "DT_STRING",
        )
    if scores is not None:
        scores = _checked_classes(
            SCORES,
            np.asarray(scores),
            rows,
            lambda array: array.dtype == np.float32,
            "DT_FLOAT",
        )
    if (
        classes is not None
        and scores is not None
        and classes.shape[1] != scores.shape[1]
    ):
        raise invalid_argument(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    labels = None
    if classes is not None:
        labels = [
            [
                label if isinstance(label, bytes) else str(label).encode()
                for label in row
            ]
            for row in classes.tolist()
        ]
    return Classification(labels, scores)


def regression(outputs, rows):
    """A regress signature's `outputs` (PostProcessRegressionResult's
    checks) as a float32 `[batch]` array."""
    values = np.asarray(outputs[OUTPUTS])
    if (
        values.ndim not in (1, 2)
        or values.shape[0] != rows
        or (values.ndim == 2 and values.shape[1] != 1)
    ):
        raise invalid_argument(
            "Expected output Tensor shape to be either [batch_size] or "
            f"[batch_size, 1] but got {_shape_text(values)}"
        )
    if values.dtype != np.float32:
        raise invalid_argument(
            f"Expected output Tensor of DT_FLOAT.  Got: {_dtype_name(values)}"
        )
    return values.reshape(-1)


def classify_regress(
    predictor, servable, signature_name, method, serialized, deadline=None, api=None
):
    """Runs one Classify (`method` "classify") or Regress ("regress").

    Args:
        predictor: The server's `Predictor`.
        servable: From `predictor.servable(spec)`.
        signature_name: The signature key; "" is `serving_default`.
        method: "classify" or "regress".
        serialized: The serialized Examples (`serialize_examples`).
        deadline: A `time.monotonic()` time for batched calls, or None.
        api: The runtime metric's API label (default: "Classify" or
            "Regress").

    Returns:
        (signature key, a `Classification` or a float32 `[batch]` array).
    """
    method_name = METHODS[method]
    key, _ = check_signature(
        servable, signature_name, method_name, predictor.method_name_check
    )
    outputs = predictor.predict(
        servable,
        key,
        {INPUTS: serialized},
        deadline=deadline,
        api=api or method.capitalize(),
    )
    rows = len(serialized)
    if method_name == CLASSIFY_METHOD:
        return key, classification(outputs, rows)
    return key, regression(outputs, rows)


def check_tasks(request):
    """TF Serving's checks of a `MultiInferenceRequest`'s tasks: at least
    one, all of one model, no signature twice, classify or regress only."""
    if not request.tasks:
        raise invalid_argument("Found no tasks in MultiInference request.")
    name = request.tasks[0].model_spec.name
    seen = set()
    for task in request.tasks:
        if task.model_spec.name != name:
            raise invalid_argument(
                "All ModelSpecs in a MultiInferenceRequest must access the same "
                "model name."
            )
        signature_key = task.model_spec.signature_name or SIGNATURE
        if signature_key in seen:
            raise invalid_argument(
                f"Duplicate evaluation of signature: {signature_key}"
            )
        seen.add(signature_key)
        if task.method_name not in _KINDS:
            raise ServingError(
                Code.UNIMPLEMENTED,
                f"Unsupported signature method_name: {task.method_name}",
            )


def multi_inference(predictor, request, serialized, resolve, deadline=None):
    """(servable, [(task, signature key, `classify_regress` answer)]) for
    `request` (a `MultiInferenceRequest` that passed `check_tasks`): each
    task's classify or regress signature run on the same Examples of the
    servable `resolve(model_spec)` of the first task's `ModelSpec` proto."""
    servable = resolve(request.tasks[0].model_spec)
    # TF Serving feeds one tensor in one session run: the signatures' input
    # must be the same graph tensor (`export.classify_signatures` shares it)
    tensors = set()
    for task in request.tasks:
        _, signature_def = check_signature(
            servable,
            task.model_spec.signature_name,
            task.method_name,
            predictor.method_name_check,
        )
        tensors.add(signature_def.inputs[INPUTS].name)
    if len(tensors) != 1:
        raise invalid_argument("Input tensor must be the same for all Signatures.")
    answers = []
    for task in request.tasks:
        method = "classify" if task.method_name == CLASSIFY_METHOD else "regress"
        answers.append(
            (
                task,
                *classify_regress(
                    predictor,
                    servable,
                    task.model_spec.signature_name,
                    method,
                    serialized,
                    deadline,
                    "MultiInference",
                ),
            )
        )
    return servable, answers
