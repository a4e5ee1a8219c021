"""Warm-up records: written by the exporter, replayed by `keras-mtl serve`."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl.export_warmup import prediction_log_bytes, write_warmup_requests
from keras_mtl.saved_model import LoadedModel
from keras_mtl.serving import ModelServer, ModelSpec, ServedModelConfig
from keras_mtl.serving.predictor import Predictor
from keras_mtl.serving.warmup import read_warmup_records, warmup_file

import serving_helpers as helpers

prediction_log_pb2 = pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tabular export with 3 warm-up records (one row each)."""
    base = tmp_path_factory.mktemp("saved_models")
    path = helpers.export_tabular(base)
    rows = helpers.tabular_rows(3, seed=5)
    columns = helpers.columns(rows, LoadedModel(path).input_specs)
    write_warmup_requests(path, columns)
    return path, columns


def test_the_warmup_file_is_tf_servings_prediction_log_tfrecord(exported):
    path, columns = exported
    records = [
        prediction_log_pb2.PredictionLog.FromString(serialized)
        for serialized in tf.data.TFRecordDataset(
            str(warmup_file(path))
        ).as_numpy_iterator()
    ]
    assert len(records) == 3
    for row, record in enumerate(records):
        request = record.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert sorted(request.inputs) == sorted(columns)
        for name, value in columns.items():
            expected = value[row : row + 1]
            if expected.dtype == object:
                expected = np.char.encode(expected.astype(str)).astype(object)
            np.testing.assert_array_equal(
                tf.make_ndarray(request.inputs[name]), expected
            )


def test_the_server_replays_each_record_before_the_version_serves(
    exported, monkeypatch
):
    path, _ = exported
    calls = []
    real_predict = Predictor.predict

    def counting(self, servable, signature_name, inputs, *args, **kwargs):
        calls.append(next(iter(inputs.values())).shape[0])
        return real_predict(self, servable, signature_name, inputs, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", counting)
    config = ServedModelConfig("tabular", str(path.parent))
    with ModelServer(
        [config],
        rest_api_port=0,
        grpc_port=0,
        poll_wait_seconds=0,
        num_request_iterations_for_warmup=2,
    ) as server:
        assert calls == [1] * 6  # 3 records x 2 iterations, before serving
        assert server.registry.resolve(ModelSpec("tabular")).version == 1
    calls.clear()
    with ModelServer([config], rest_api_port=0, grpc_port=0, enable_model_warmup=False):
        assert calls == []


def test_a_failing_record_fails_the_load(tmp_path):
    path = helpers.export_tabular(tmp_path)
    write_warmup_requests(path, {"age": np.zeros((1,), np.float32)})
    with ModelServer(
        [ServedModelConfig("tabular", str(tmp_path / "tabular"))],
        rest_api_port=0,
        grpc_port=0,
        poll_wait_seconds=0,
    ) as server:
        [state] = server.registry.status(ModelSpec("tabular"))
    assert state.state == "END"
    assert "Warm-up record 0 failed" in state.error_message
    assert "input size does not match signature" in state.error_message


def test_more_than_1000_records_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at most 1000 warm-up records"):
        write_warmup_requests(tmp_path, {"x": np.zeros((1001, 1), np.float32)})
    (tmp_path / "assets.extra").mkdir()
    record = prediction_log_bytes({"x": np.zeros((1, 1), np.float32)})
    with tf.io.TFRecordWriter(str(warmup_file(tmp_path))) as writer:
        for _ in range(1001):
            writer.write(record)
    with pytest.raises(ValueError, match=r"exceeds the maximum \(1000\)"):
        read_warmup_records(tmp_path)


def test_export_run_writes_warmup_examples_rows_of_the_test_split(tmp_path):
    keras.utils.set_random_seed(0)
    config = keras_mtl.load_config(
        "adult",
        [
            "model.width=8",
            "model.depth=1",
            "model.head_units=8",
            f"export.base_dir={tmp_path}",
            "export.warmup_examples=2",
        ],
    )
    model = keras_mtl.build_model(config, helpers.TABULAR_FEATURES)
    rows = helpers.tabular_rows(5)
    batch = {
        name: tf.constant([row[name] for row in rows])
        for name in ("age", "hours-per-week", "workclass")
    }
    datasets = types.SimpleNamespace(
        test=[(batch, None)], class_names={}, features=list(helpers.TABULAR_FEATURES)
    )
    path = keras_mtl.export_run(model, config, datasets)
    records = read_warmup_records(path)
    assert len(records) == 2
    ages = [tf.make_ndarray(r.predict_log.request.inputs["age"]) for r in records]
    np.testing.assert_array_equal(np.concatenate(ages), batch["age"].numpy()[:2])
    with pytest.raises(ValueError, match="export.warmup_examples"):
        keras_mtl.load_config("adult", ["export.warmup_examples=1001"])
    # with a classify or regress signature per task, a row is 3 records
    with_signatures = ["export.classify_signatures=true", "export.warmup_examples="]
    keras_mtl.load_config("adult", [with_signatures[0], with_signatures[1] + "333"])
    with pytest.raises(ValueError, match=r"in \[0, 333\].*each row is 3 records"):
        keras_mtl.load_config("adult", [with_signatures[0], with_signatures[1] + "334"])
