"""Replaying `assets.extra/tf_serving_warmup_requests` before a version serves.

TF Serving's `--enable_model_warmup`: the file is a TFRecord of
`PredictionLog` protos (at most 1,000); each `predict_log.request` is run
`--num_request_iterations_for_warmup` times against the new version before
it is swapped in, and a record that fails fails the load, as in TF Serving.
Records of other kinds (classify, regress, multi-inference, session run)
fail it too: keras-mtl serve answers Predict only.
"""

import logging
from pathlib import Path

import tensorflow as tf

from keras_mtl.saved_model import SIGNATURE, WARMUP_FILE

logger = logging.getLogger("keras_mtl.serving")

MAX_WARMUP_RECORDS = 1000


def warmup_file(version_dir):
    return Path(version_dir) / "assets.extra" / WARMUP_FILE


def read_warmup_records(version_dir):
    """The `PredictionLog`s of a version's warm-up file; [] when it has none.

    Raises:
        ValueError: For more than 1,000 records, or a record that does not
            parse.
    """
    path = warmup_file(version_dir)
    if not path.is_file():
        return []
    try:
        from tensorflow_serving.apis import prediction_log_pb2
    except ImportError:
        logger.warning(
            "Not replaying %s: reading it needs the tensorflow-serving-api protos "
            '(pip install "keras-mtl[serving]").',
            path,
        )
        return []
    records = []
    for serialized in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        if len(records) == MAX_WARMUP_RECORDS:
            raise ValueError(
                f"Number of warmup records exceeds the maximum "
                f"({MAX_WARMUP_RECORDS}) at {path}"
            )
        records.append(prediction_log_pb2.PredictionLog.FromString(serialized))
    return records


def replay_warmup_records(servable, predict, iterations=1):
    """Runs the version's warm-up records; returns how many calls ran.

    Args:
        servable: The new `Servable`, not yet serving.
        predict: `predict(servable, signature_name, inputs)`, the server's
            checked model call (`Predictor.predict`).
        iterations: Runs of each record (`--num_request_iterations_for_warmup`).

    Raises:
        ValueError: For a record that is not a predict log, or that fails;
            the load fails with it.
    """
    calls = 0
    for index, record in enumerate(read_warmup_records(servable.path)):
        kind = record.WhichOneof("log_type")
        if kind != "predict_log":
            raise ValueError(f"Unsupported log_type for warmup: {kind}")
        request = record.predict_log.request
        inputs = {alias: tf.make_ndarray(t) for alias, t in request.inputs.items()}
        for _ in range(iterations):
            try:
                predict(servable, request.model_spec.signature_name, inputs)
            except Exception as error:  # the load fails with the record's error
                raise ValueError(f"Warm-up record {index} failed: {error}") from None
            calls += 1
    return calls


def warmup_examples(version_dir):
    """Signature key -> the inputs of its first warm-up record, for the
    synthetic warm-up at each batch size (`ModelServer`)."""
    examples = {}
    for record in read_warmup_records(version_dir):
        request = record.predict_log.request
        key = request.model_spec.signature_name or SIGNATURE
        if record.WhichOneof("log_type") == "predict_log" and key not in examples:
            examples[key] = {
                alias: tf.make_ndarray(tensor)
                for alias, tensor in request.inputs.items()
            }
    return examples
