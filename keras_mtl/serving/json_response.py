"""TF Serving's `:predict` JSON answers: output tensors as a response body.

The response half of `tensorflow_serving/util/json_tensor.cc`
(MakeJsonFromTensors): a row request (`{"instances": ...}`) is answered
`{"predictions": [...]}`, one item per example (an object keyed by output
name when there are several outputs); a columnar one (`{"inputs": ...}`) is
answered `{"outputs": ...}`, one value per output. The checks and their
messages follow TF Serving's.

Example:

```python
body = tensors_to_json({"coarse": probabilities}, ROW)
```
"""

import json

import numpy as np

from keras_mtl.serving.json_tensor import BYTES_SUFFIX, json_tokens, nest
from keras_mtl.serving.status import invalid_argument

# The request formats; a response takes the format of its request.
ROW, COLUMNAR = "row", "columnar"


def _batch_size(arrays):
    """The batch size every output shares, with TF Serving's errors."""
    batch = None
    for name, array in arrays.items():
        if array.ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
        if array.shape[0] < 1:
            raise invalid_argument(
                f"Tensor name: {name} has invalid batch size: {array.shape[0]}"
            )
        if batch is not None and array.shape[0] != batch:
            raise invalid_argument(
                f"Tensor name: {name} has inconsistent batch size: "
                f"{array.shape[0]} expecting: {batch}"
            )
        batch = array.shape[0]
    return batch


def _columnar_body(names, arrays, tokens):
    texts = {name: nest(tokens[name], arrays[name].shape) for name in names}
    if len(names) == 1:
        return ('{"outputs": ' + texts[names[0]] + "}").encode()
    items = ", ".join(f"{json.dumps(name)}: {texts[name]}" for name in names)
    return ('{"outputs": {' + items + "}}").encode()


def _row_body(names, arrays, tokens):
    batch = _batch_size(arrays)
    rows = {}
    for name, array in arrays.items():
        inner = array.shape[1:]
        step = int(np.prod(inner))
        rows[name] = [nest(tokens[name], inner, i * step) for i in range(batch)]
    if len(names) == 1:
        items = rows[names[0]]
    else:
        keys = [json.dumps(name) for name in names]
        items = [
            "{"
            + ", ".join(
                f"{key}: {rows[name][i]}" for key, name in zip(keys, names, strict=True)
            )
            + "}"
            for i in range(batch)
        ]
    return ('{"predictions": [' + ", ".join(items) + "]}").encode()


def tensors_to_json(outputs, request_format):
    """The response body for `outputs` (MakeJsonFromTensors), as bytes.

    Args:
        outputs: Output name -> numpy array.
        request_format: `ROW` (answers `{"predictions": ...}`, one item per
            example) or `COLUMNAR` (answers `{"outputs": ...}`).
    """
    if not outputs:
        raise invalid_argument("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    arrays = {name: np.asarray(outputs[name]) for name in names}
    tokens = {
        name: json_tokens(array, name.endswith(BYTES_SUFFIX))
        for name, array in arrays.items()
    }
    if request_format == COLUMNAR:
        return _columnar_body(names, arrays, tokens)
    return _row_body(names, arrays, tokens)


def classification_to_json(answer):
    """`{"result": [[[label, score], ...], ...]}` for an
    `inference.Classification` (MakeJsonFromClassificationResult), as bytes:
    a label without `classes` is "", a score without `scores` 0."""
    rows, width = answer.rows, answer.width
    labels = answer.labels or [[b""] * width] * rows
    scores = answer.scores
    if scores is None:
        scores = np.zeros((rows, width), np.float32)
    tokens = json_tokens(np.asarray(scores, np.float32), False)
    items = [
        "["
        + ", ".join(
            f"[{json.dumps(label.decode('utf-8', 'replace'))}, {tokens[row * width + i]}]"
            for i, label in enumerate(labels[row])
        )
        + "]"
        for row in range(rows)
    ]
    return ('{"result": [' + ", ".join(items) + "]}").encode()


def regression_to_json(values):
    """`{"result": [value, ...]}` for a regress signature's float32 values
    (MakeJsonFromRegressionResult), as bytes."""
    tokens = json_tokens(np.asarray(values, np.float32), False)
    return ('{"result": [' + ", ".join(tokens) + "]}").encode()
