"""Warm-up requests written beside an export, in TF Serving's format.

`assets.extra/tf_serving_warmup_requests` is a TFRecord file of
`tensorflow.serving.PredictionLog` protos; `tensorflow_model_server
--enable_model_warmup` (and `keras-mtl serve`) replays them before a version
serves, so that its first real request does not pay for graph tracing and
allocation (~14 ms, then ~18 ms at each new batch size). Each record here is
one `PredictRequest` of one row for `serving_default`; an export with
classify and regress signatures (`export.classify_signatures`) also gets, per
row and per such signature, a `ClassificationRequest` or `RegressionRequest`
of that row as one `tf.Example`.

The protos are written field by field (the wire format of a few nested
messages around TensorFlow's own `TensorProto`), so exporting does not need
the `tensorflow-serving-api` package; the tests read the file back with it.
"""

import numpy as np
import tensorflow as tf

from keras_mtl.export_classify import serialized_examples
from keras_mtl.saved_model import REGRESS_METHOD, SIGNATURE, WARMUP_FILE

MAX_WARMUP_RECORDS = 1000  # TF Serving refuses to load a version with more

# Field numbers of tensorflow_serving/apis/*.proto.
_PREDICTION_LOG_PREDICT_LOG = 6
_PREDICTION_LOG_CLASSIFY_LOG, _PREDICTION_LOG_REGRESS_LOG = 2, 3
_PREDICT_LOG_REQUEST = 1  # (ClassifyLog and RegressLog's too)
_REQUEST_MODEL_SPEC, _REQUEST_INPUTS = 1, 2
_REQUEST_INPUT = 2  # ClassificationRequest / RegressionRequest.input
_INPUT_EXAMPLE_LIST, _EXAMPLE_LIST_EXAMPLES = 1, 1
_MODEL_SPEC_SIGNATURE_NAME = 3
_MAP_KEY, _MAP_VALUE = 1, 2


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, payload):
    """A length-delimited field (wire type 2): a message, string or bytes."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log_bytes(inputs, signature_name=SIGNATURE):
    """One serialized `PredictionLog` whose `predict_log.request` carries
    `inputs` (name -> array) for `signature_name`."""
    spec = _field(_MODEL_SPEC_SIGNATURE_NAME, signature_name.encode())
    request = _field(_REQUEST_MODEL_SPEC, spec)
    for name in sorted(inputs):
        tensor = tf.make_tensor_proto(inputs[name]).SerializeToString()
        entry = _field(_MAP_KEY, name.encode()) + _field(_MAP_VALUE, tensor)
        request += _field(_REQUEST_INPUTS, entry)
    return _field(_PREDICTION_LOG_PREDICT_LOG, _field(_PREDICT_LOG_REQUEST, request))


def inference_log_bytes(example, signature_name, method_name):
    """One serialized `PredictionLog` whose `classify_log.request` (or
    `regress_log.request`, for `method_name` tensorflow/serving/regress)
    carries one serialized `tf.Example` for `signature_name`."""
    spec = _field(_MODEL_SPEC_SIGNATURE_NAME, signature_name.encode())
    examples = _field(_INPUT_EXAMPLE_LIST, _field(_EXAMPLE_LIST_EXAMPLES, example))
    request = _field(_REQUEST_MODEL_SPEC, spec) + _field(_REQUEST_INPUT, examples)
    log = (
        _PREDICTION_LOG_REGRESS_LOG
        if method_name == REGRESS_METHOD
        else _PREDICTION_LOG_CLASSIFY_LOG
    )
    return _field(log, _field(_PREDICT_LOG_REQUEST, request))


def warmup_rows(batch, count):
    """The first `count` rows of `batch` (name -> tensor or array) as numpy
    arrays, or None when `count` is 0."""
    if not count:
        return None
    return {name: np.asarray(value)[:count] for name, value in batch.items()}


def write_warmup_requests(version_dir, inputs, signatures=None, example_rows=None):
    """Writes one warm-up record per row of `inputs` (name -> array) to
    `version_dir/assets.extra/tf_serving_warmup_requests`; nothing when
    `inputs` is None. Returns the number of records.

    Args:
        version_dir: The SavedModel's directory.
        inputs: `serving_default`'s inputs, name -> array of rows, or None.
        signatures: Classify / regress signature name -> method name; each
            gets one record per row of `example_rows` (default: `inputs`),
            the row as one `tf.Example` (`export_classify.serialized_examples`).
        example_rows: The model's inputs when `serving_default` takes others
            (encoded image bytes).

    Raises:
        ValueError: For more than TF Serving's 1,000 records.
    """
    if inputs is None:
        return 0
    rows = min(len(value) for value in inputs.values())
    signatures = signatures or {}
    records = rows * (1 + len(signatures))
    if records > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"TF Serving replays at most {MAX_WARMUP_RECORDS} warm-up records. "
            f"Received: {rows} rows (export.warmup_examples) for "
            f"{1 + len(signatures)} signatures, {records} records."
        )
    serialized = []
    if signatures:
        rows_of = example_rows if example_rows is not None else inputs
        serialized = serialized_examples(
            {name: value[:rows] for name, value in rows_of.items()}
        )
    directory = tf.io.gfile.join(str(version_dir), "assets.extra")
    tf.io.gfile.makedirs(directory)
    with tf.io.TFRecordWriter(tf.io.gfile.join(directory, WARMUP_FILE)) as writer:
        for row in range(rows):
            writer.write(
                prediction_log_bytes(
                    {name: value[row : row + 1] for name, value in inputs.items()}
                )
            )
            for name, method in signatures.items():
                writer.write(inference_log_bytes(serialized[row], name, method))
    return records
