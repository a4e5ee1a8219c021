"""Replaying `assets.extra/tf_serving_warmup_requests` before a version serves.

TF Serving's `--enable_model_warmup`: the file is a TFRecord of
`PredictionLog` protos (at most 1,000); each request of a predict,
classify, regress or multi-inference log is run
`--num_request_iterations_for_warmup` times against the new version before
it is swapped in, and a record that fails fails the load, as in TF Serving.
A session-run log fails it too: keras-mtl serve does not run sessions.
"""

import logging
from pathlib import Path

import tensorflow as tf

from keras_mtl.saved_model import SIGNATURE, WARMUP_FILE
from keras_mtl.serving.inference import METHODS, serialize_input
from keras_mtl.serving.status import ServingError

logger = logging.getLogger("keras_mtl.serving")

MAX_WARMUP_RECORDS = 1000
# Log kinds run through Classify / Regress, and the method each runs.
_INFERENCE_LOGS = {
    "classify_log": "classify",
    "regress_log": "regress",
    "multi_inference_log": None,
}
_METHODS = {method_name: method for method, method_name in METHODS.items()}


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


def replay_warmup_records(servable, predict, iterations=1, classify_regress=None):
    """Runs the version's warm-up records; returns how many calls ran.

    Args:
        servable: The new `Servable`, not yet serving.
        predict: `predict(servable, signature_name, inputs)`, the server's
            checked model call (`Predictor.predict`).
        iterations: Runs of each record (`--num_request_iterations_for_warmup`).
        classify_regress: `classify_regress(servable, signature_name, method,
            serialized)` (method "classify" or "regress", `serialized` the
            request's serialized Examples) for classify, regress and
            multi-inference logs; None refuses them.

    Raises:
        ValueError: For a record of a kind that cannot be run, or that
            fails; the load fails with it.
    """
    calls = 0
    for index, record in enumerate(read_warmup_records(servable.path)):
        try:
            runs = _runs(record, predict, classify_regress)
            for _ in range(iterations):
                for run in runs:
                    run(servable)
                calls += 1
        except Exception as error:  # the load fails with the record's error
            raise ValueError(f"Warm-up record {index} failed: {error}") from None
    return calls


def _runs(record, predict, classify_regress):
    """The calls one warm-up record makes, each `run(servable)`."""
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        request = record.predict_log.request
        inputs = {alias: tf.make_ndarray(t) for alias, t in request.inputs.items()}
        name = request.model_spec.signature_name
        return [lambda servable: predict(servable, name, inputs)]
    if kind not in _INFERENCE_LOGS or classify_regress is None:
        raise ValueError(f"Unsupported log_type for warmup: {kind}")
    request = getattr(record, kind).request
    serialized = serialize_input(request.input)
    if kind == "multi_inference_log":
        tasks = [
            (task.model_spec.signature_name, _METHODS.get(task.method_name))
            for task in request.tasks
        ]
    else:
        tasks = [(request.model_spec.signature_name, _INFERENCE_LOGS[kind])]
    if any(method is None for _, method in tasks):
        raise ValueError(f"Unsupported method_name for warmup in {kind}")
    return [
        lambda servable, name=name, method=method: classify_regress(
            servable, name, method, serialized
        )
        for name, method in tasks
    ]


def warmup_examples(version_dir, signature_inputs):
    """Signature key -> the inputs of its first warm-up record, for the
    synthetic warm-up at each batch size (`ModelServer`); a classify or
    regress record's Examples are the input of its signature's one input
    (`signature_inputs`: key -> input name -> spec)."""
    examples = {}
    for record in read_warmup_records(version_dir):
        kind = record.WhichOneof("log_type")
        if kind not in ("predict_log", "classify_log", "regress_log"):
            continue
        request = getattr(record, kind).request
        key = request.model_spec.signature_name or SIGNATURE
        if key in examples:
            continue
        if kind == "predict_log":
            examples[key] = {
                alias: tf.make_ndarray(tensor)
                for alias, tensor in request.inputs.items()
            }
        elif len(signature_inputs.get(key, ())) == 1:
            (alias,) = signature_inputs[key]
            try:
                examples[key] = {alias: serialize_input(request.input)}
            except ServingError:
                continue  # an empty Input: the replay has refused it already
    return examples
