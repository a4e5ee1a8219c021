"""Classify, Regress and MultiInference: the export's tf.Example signatures,
served over gRPC and REST as TF Serving serves them."""

import json
import threading
import time
import urllib.error
import urllib.request

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import fingerprint_pb2, saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

import keras_mtl
from keras_mtl import export_classify
from keras_mtl.compat.tf_saved_model import fingerprint_bytes
from keras_mtl.saved_model import LoadedModel, read_signature_defs
from keras_mtl.serving import (
    BatchingParameters,
    Client,
    ModelServer,
    ModelSpec,
    MonitoringConfig,
    ServedModelConfig,
    ServingError,
    inference,
    json_response,
)
from keras_mtl.serving.predictor import Predictor
from keras_mtl.serving.warmup import warmup_examples, warmup_file

import serving_helpers as helpers

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
INCOME_CLASSES = ["<=50K", ">50K"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tabular model with a regression and a binary head, and an image model
    with two multiclass heads, exported with classify signatures."""
    base = tmp_path_factory.mktemp("saved_models")
    return {
        "tabular": helpers.export_tabular(
            base,
            overrides=['tasks.0.kind="regression"'],
            class_names={"income": INCOME_CLASSES},
            rows=helpers.tabular_rows(2, seed=7),
        ),
        "image": helpers.export_image(base, class_names={}),
    }


@pytest.fixture(scope="module")
def server(models):
    with helpers.model_server(models) as server:
        yield server


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _columns(rows):
    return {name: np.array([row[name] for row in rows]) for name in rows[0]}


def _predicted(models, rows):
    loaded = LoadedModel(models["tabular"])
    return loaded.predict(helpers.columns(rows, loaded.input_specs))


def _post(server, route, body):
    request = urllib.request.Request(
        server.rest_url + route, data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _request(kind, signature, rows, model="tabular"):
    request = (
        classification_pb2.ClassificationRequest()
        if kind == "classify"
        else regression_pb2.RegressionRequest()
    )
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if rows:
        examples = export_classify.examples(_columns(rows))
        request.input.example_list.examples.extend(examples)
    return request


def _call(kind, signature, rows=None):
    """A Classify or Regress call (`kind`) of `signature` of the tabular
    model on `rows` (default: one row) as Examples."""
    request = _request(
        kind, signature, helpers.tabular_rows(1) if rows is None else rows
    )
    return lambda stub: getattr(stub, kind.capitalize())(request, timeout=30)


def test_the_export_marks_each_head_s_signature_for_tf_serving(models):
    signatures = read_signature_defs(models["tabular"])
    assert signatures["classify_income"].method_name == CLASSIFY
    assert signatures["regress_marital_status"].method_name == REGRESS
    assert signatures["serving_default"].method_name == "tensorflow/serving/predict"
    for name, outputs in (
        ("classify_income", {"classes", "scores"}),
        ("regress_marital_status", {"outputs"}),
    ):
        assert list(signatures[name].inputs) == ["inputs"]
        assert signatures[name].inputs["inputs"].dtype == tf.string.as_datatype_enum
        assert set(signatures[name].outputs) == outputs
    image = read_signature_defs(models["image"])
    assert {name for name in image if name.startswith("classify_")} == {
        "classify_coarse",
        "classify_fine",
    }
    # one input tensor for all, as TF Serving's MultiInference feeds one
    inputs = {
        s.inputs["inputs"].name
        for name, s in signatures.items()
        if name.startswith(("classify_", "regress_"))
    }
    assert len(inputs) == 1
    # the fingerprint is that of the edited saved_model.pb
    for path in models.values():
        assert _hashes((path / "fingerprint.pb").read_bytes()) == _hashes(
            fingerprint_bytes(path)
        )


def _hashes(serialized):
    """A serialized FingerprintDef without its random `uuid`."""
    fingerprint = fingerprint_pb2.FingerprintDef.FromString(serialized)
    fingerprint.ClearField("uuid")
    return fingerprint


def test_the_signatures_answer_what_the_model_predicts_on_examples(models):
    rows = helpers.tabular_rows(4)
    expected = _predicted(models, rows)
    loaded = tf.saved_model.load(str(models["tabular"]))
    serialized = tf.constant(export_classify.serialized_examples(_columns(rows)))
    income = loaded.signatures["classify_income"](inputs=serialized)
    probability = expected["income"].reshape(-1)
    np.testing.assert_allclose(
        income["scores"], np.stack([1 - probability, probability], 1), atol=1e-6
    )
    assert income["classes"].numpy().tolist() == [[b"<=50K", b">50K"]] * 4
    regress = loaded.signatures["regress_marital_status"](inputs=serialized)
    np.testing.assert_allclose(
        regress["outputs"], expected["marital_status"].reshape(-1), atol=1e-6
    )
    images = helpers.image_batch(2)
    image = tf.saved_model.load(str(models["image"]))
    fine = image.signatures["classify_fine"](
        inputs=tf.constant(export_classify.serialized_examples({"image": images}))
    )
    np.testing.assert_allclose(
        fine["scores"],
        LoadedModel(models["image"]).predict({"image": images})["fine"],
        atol=1e-6,
    )
    assert fine["classes"].numpy()[0].tolist() == [str(i).encode() for i in range(12)]


def test_an_input_of_unknown_shape_cannot_get_classify_signatures():
    inputs = {"tokens": keras.Input((None,), name="tokens")}
    outputs = {
        "y": keras.layers.Dense(1)(
            keras.layers.GlobalAveragePooling1D()(
                keras.layers.Reshape((-1, 1))(inputs["tokens"])
            )
        )
    }
    with pytest.raises(ValueError, match="input 'tokens' has shape \\(None,\\)"):
        export_classify.feature_spec(keras.Model(inputs, outputs))


def test_grpc_classify_and_regress_answer_the_model_s_outputs(stub, models):
    rows = helpers.tabular_rows(3)
    expected = _predicted(models, rows)
    response = stub.Classify(_request("classify", "classify_income", rows), timeout=30)
    assert response.model_spec.name == "tabular"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "classify_income"
    for row, classifications in enumerate(response.result.classifications):
        assert [c.label for c in classifications.classes] == INCOME_CLASSES
        assert classifications.classes[1].score == pytest.approx(
            float(expected["income"][row, 0]), abs=1e-6
        )
    response = stub.Regress(
        _request("regress", "regress_marital_status", rows), timeout=30
    )
    assert [r.value for r in response.result.regressions] == pytest.approx(
        expected["marital_status"].reshape(-1).tolist(), abs=1e-6
    )


def test_a_context_is_merged_into_every_example(stub, models):
    rows = helpers.tabular_rows(2)
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "tabular"
    request.model_spec.signature_name = "classify_income"
    with_context = request.input.example_list_with_context
    (context,) = export_classify.examples({"workclass": np.array(["Self-emp-not-inc"])})
    with_context.context.CopyFrom(context)
    # the first Example's own workclass wins over the context's
    partial = [
        {"age": row["age"], "hours-per-week": row["hours-per-week"]} for row in rows
    ]
    with_context.examples.extend(export_classify.examples(_columns(partial)))
    with_context.examples[0].features.feature["workclass"].bytes_list.value.append(
        rows[0]["workclass"].encode()
    )
    assert rows[0]["workclass"] != "Self-emp-not-inc"
    merged = [rows[0], {**partial[1], "workclass": "Self-emp-not-inc"}]
    expected = _predicted(models, merged)["income"].reshape(-1)
    response = stub.Classify(request, timeout=30)
    scores = [c.classes[1].score for c in response.result.classifications]
    assert scores == pytest.approx(expected.tolist(), abs=1e-6)


def test_multi_inference_runs_each_task_on_the_same_examples(stub, models):
    rows = helpers.tabular_rows(2)
    expected = _predicted(models, rows)
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (
        ("classify_income", CLASSIFY),
        ("regress_marital_status", REGRESS),
    ):
        task = request.tasks.add()
        task.model_spec.name = "tabular"
        task.model_spec.signature_name = signature
        task.method_name = method
    request.input.example_list.examples.extend(export_classify.examples(_columns(rows)))
    response = stub.MultiInference(request, timeout=30)
    classify, regress = response.results
    assert classify.model_spec.signature_name == "classify_income"
    assert regress.model_spec.signature_name == "regress_marital_status"
    assert [
        c.classes[1].score for c in classify.classification_result.classifications
    ] == pytest.approx(expected["income"].reshape(-1).tolist(), abs=1e-6)
    assert [r.value for r in regress.regression_result.regressions] == pytest.approx(
        expected["marital_status"].reshape(-1).tolist(), abs=1e-6
    )


def _multi_call(*tasks):
    """A MultiInference call of `tasks` ((model, signature[, method]); the
    method is classify by default) on one Example."""
    request = inference_pb2.MultiInferenceRequest()
    for model, signature, *method in tasks:
        task = request.tasks.add()
        task.model_spec.name = model
        task.model_spec.signature_name = signature
        task.method_name = method[0] if method else CLASSIFY
    request.input.example_list.examples.extend(
        export_classify.examples(_columns(helpers.tabular_rows(1)))
    )
    return lambda stub: stub.MultiInference(request, timeout=30)


@pytest.mark.parametrize(
    "call, code, fragment",
    [
        (  # TF Serving's default: a signature's shape decides, not its method
            _call("classify", "serving_default"),
            "INVALID_ARGUMENT",
            "Expected one input Tensor.",
        ),
        (
            _call("regress", "classify_income"),
            "INVALID_ARGUMENT",
            "Expected one output Tensor.",
        ),
        (
            _call("classify", "classify_income", rows=[]),
            "INVALID_ARGUMENT",
            "Input is empty.",
        ),
        (
            _call("classify", "classify_income", rows=[{"age": 30.0}]),
            "INVALID_ARGUMENT",
            "Feature: hours-per-week (data type: float) is required",
        ),
        (
            _call("classify", "nope"),
            "INVALID_ARGUMENT",
            "No signature was found with the name: nope",
        ),
        (
            _multi_call(),
            "INVALID_ARGUMENT",
            "Found no tasks in MultiInference request.",
        ),
        (
            _multi_call(("tabular", "classify_income"), ("image", "classify_fine")),
            "INVALID_ARGUMENT",
            "must access the same model name",
        ),
        (
            _multi_call(("tabular", "classify_income"), ("tabular", "classify_income")),
            "INVALID_ARGUMENT",
            "Duplicate evaluation of signature: classify_income",
        ),
        (
            _multi_call(("tabular", "serving_default", "tensorflow/serving/predict")),
            "UNIMPLEMENTED",
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
        (_multi_call(("nope", "classify_income")), "NOT_FOUND", "nope"),
    ],
)
def test_grpc_errors_name_what_is_wrong(stub, call, code, fragment):
    with pytest.raises(grpc.RpcError) as caught:
        call(stub)
    assert caught.value.code().name == code
    assert fragment in caught.value.details()
    # and the server goes on answering
    assert stub.Classify(
        _request("classify", "classify_income", helpers.tabular_rows(1)), timeout=30
    ).result.classifications


def test_rest_classify_and_regress_answer_as_grpc_does(server, stub, models):
    rows = helpers.tabular_rows(3)
    status, body = _post(
        server,
        "/v1/models/tabular:classify",
        {"signature_name": "classify_income", "examples": rows},
    )
    assert status == 200
    response = stub.Classify(_request("classify", "classify_income", rows), timeout=30)
    assert body == {
        "result": [
            [[c.label, pytest.approx(c.score, abs=1e-7)] for c in row.classes]
            for row in response.result.classifications
        ]
    }
    status, body = _post(
        server,
        "/v1/models/tabular/versions/1:regress",
        {
            "signature_name": "regress_marital_status",
            "context": {"workclass": rows[0]["workclass"]},
            "examples": [
                {"age": row["age"], "hours-per-week": [row["hours-per-week"]]}
                for row in rows[:1]
            ],
        },
    )
    assert status == 200
    assert body["result"] == pytest.approx(
        _predicted(models, rows[:1])["marital_status"].reshape(-1).tolist(), abs=1e-6
    )


@pytest.mark.parametrize(
    "example, fragment",
    [
        (
            {"age": 30, "hours-per-week": 40.0, "workclass": "Private"},
            "Key: age, Index: 0.  Data types don't match. Data type: int64 but "
            "expected type: float",
        ),
        (
            {"hours-per-week": 40.0, "workclass": "Private"},
            "Feature: age (data type: float) is required but could not be found.",
        ),
        (
            {"age": [30.0, 31.0], "hours-per-week": 40.0, "workclass": "Private"},
            "Key: age, Index: 0.  Number of float values != expected.",
        ),
        (
            {"age": [30.0, "x"], "hours-per-week": 40.0, "workclass": "Private"},
            "Unexpected element type in feature: age expecting type: float",
        ),
    ],
)
def test_rest_errors_name_the_feature(server, example, fragment):
    status, body = _post(
        server,
        "/v1/models/tabular:classify",
        {"signature_name": "classify_income", "examples": [example]},
    )
    assert status == 400
    assert fragment in body["error"]


@pytest.mark.parametrize(
    "outputs, fragment",
    [
        (
            {"scores": np.zeros((2, 3), np.float64)},
            "Expected scores Tensor of DT_FLOAT. Got: DT_DOUBLE",
        ),
        (
            {"classes": np.zeros((2, 3), np.float32)},
            "Expected classes Tensor of DT_STRING. Got: DT_FLOAT",
        ),
        (
            {"scores": np.zeros((3, 2), np.float32)},
            "Expected scores output batch size of 2. Got: 3",
        ),
        (
            {"scores": np.zeros((2,), np.float32)},
            "Expected Tensor shape: [batch_size num_classes] but got [2]",
        ),
        (
            {
                "scores": np.zeros((2, 3), np.float32),
                "classes": np.full((2, 2), b"a", object),
            },
            "Tensors class and score should match in dim_size(1). Got 2 vs. 3",
        ),
    ],
)
def test_classify_outputs_are_checked_as_tf_serving_checks_them(outputs, fragment):
    with pytest.raises(ServingError) as caught:
        inference.classification(outputs, 2)
    assert fragment in caught.value.message


def test_classify_and_regress_answers_take_either_output_and_both_shapes():
    scores_only = inference.classification({"scores": np.eye(2, dtype=np.float32)}, 2)
    assert scores_only.labels is None and (scores_only.rows, scores_only.width) == (
        2,
        2,
    )
    assert json.loads(json_response.classification_to_json(scores_only)) == {
        "result": [[["", 1.0], ["", 0.0]], [["", 0.0], ["", 1.0]]]
    }
    classes_only = inference.classification(
        {"classes": np.array([[b"a", b"b"]], object)}, 1
    )
    assert json.loads(json_response.classification_to_json(classes_only)) == {
        "result": [[["a", 0.0], ["b", 0.0]]]
    }
    for values in (np.ones(3, np.float32), np.ones((3, 1), np.float32)):
        assert inference.regression({"outputs": values}, 3).tolist() == [1.0] * 3
    with pytest.raises(ServingError, match=r"\[batch_size, 1\] but got \[3,2\]"):
        inference.regression({"outputs": np.ones((3, 2), np.float32)}, 3)


def _records(path):
    return [
        prediction_log_pb2.PredictionLog.FromString(serialized)
        for serialized in tf.data.TFRecordDataset(
            str(warmup_file(path))
        ).as_numpy_iterator()
    ]


def test_warmup_records_cover_the_classify_and_regress_signatures(models):
    records = _records(models["tabular"])
    kinds = [
        (r.WhichOneof("log_type"), getattr(r, r.WhichOneof("log_type")).request)
        for r in records
    ]
    assert [(kind, r.model_spec.signature_name) for kind, r in kinds] == [
        ("predict_log", "serving_default"),
        ("regress_log", "regress_marital_status"),
        ("classify_log", "classify_income"),
    ] * 2
    rows = helpers.tabular_rows(2, seed=7)
    expected = export_classify.examples(_columns(rows))
    for row in range(2):
        for _, request in kinds[3 * row + 1 : 3 * row + 3]:
            (example,) = request.input.example_list.examples
            assert example == expected[row]
    # the first record of each signature warms it up at each batch size
    loaded = LoadedModel(models["tabular"])
    first = warmup_examples(models["tabular"], loaded.signature_inputs)
    (serialized,) = first["classify_income"]["inputs"].tolist()
    assert tf.train.Example.FromString(serialized) == expected[0]
    assert sorted(first) == sorted(
        ["serving_default", "regress_marital_status", "classify_income"]
    )


def test_the_server_replays_classify_regress_and_multi_inference_records(
    models, tmp_path, monkeypatch
):
    """Every record kind but session runs is replayed before the version
    serves; a multi-inference record naming a predict signature fails the
    load with the record's number."""
    calls = []
    real_predict = Predictor.predict

    def counting(self, servable, signature_name, inputs, *args, **kwargs):
        calls.append(signature_name or "serving_default")
        return real_predict(self, servable, signature_name, inputs, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", counting)
    model_dir = tmp_path / "tabular"
    helpers.copy_version(models["tabular"], model_dir, 1)
    config = ServedModelConfig("tabular", str(model_dir))
    with ModelServer([config], rest_api_port=0, grpc_port=0, poll_wait_seconds=0):
        pass
    assert calls == ["serving_default", "regress_marital_status", "classify_income"] * 2

    examples = export_classify.examples(_columns(helpers.tabular_rows(1)))
    tasks = (("classify_income", CLASSIFY), ("serving_default", "x"))
    for count, fails in ((1, False), (2, True)):
        multi = prediction_log_pb2.PredictionLog()
        request = multi.multi_inference_log.request
        for signature, method in tasks[:count]:
            task = request.tasks.add()
            task.model_spec.signature_name, task.method_name = signature, method
        request.input.example_list.examples.extend(examples)
        with tf.io.TFRecordWriter(str(warmup_file(model_dir / "1"))) as writer:
            writer.write(multi.SerializeToString())
        calls.clear()
        with ModelServer(
            [config], rest_api_port=0, grpc_port=0, poll_wait_seconds=0
        ) as server:
            [state] = server.registry.status(ModelSpec("tabular"))
        if fails:
            assert state.state == "END"
            assert "Warm-up record 0 failed: Unsupported method_name" in (
                state.error_message
            )
        else:
            assert state.state == "AVAILABLE"
            assert calls == ["classify_income"]


def test_an_image_bytes_export_gets_classify_signatures_over_pixels(tmp_path):
    """`serving_default` takes encoded images, the classify signatures the
    pixels as float features; both get warm-up records."""
    keras.utils.set_random_seed(0)
    config = keras_mtl.load_config(
        "shapes", ["model.width=4", "model.depth=1", "model.head_units=8"]
    )
    model = keras_mtl.build_model(config, helpers.IMAGE_FEATURES)
    images = helpers.image_batch(2)
    path = keras_mtl.export_saved_model(
        model,
        tmp_path,
        "image",
        image_input="bytes",
        classify_tasks=[{"name": "coarse", "kind": "multiclass", "class_names": None}],
        warmup={"image": images},
    )
    records = _records(path)
    assert [r.WhichOneof("log_type") for r in records] == [
        "predict_log",
        "classify_log",
    ] * 2
    assert list(records[0].predict_log.request.inputs) == ["image_bytes"]
    (example,) = records[1].classify_log.request.input.example_list.examples
    assert example.features.feature["image"].float_list.value == pytest.approx(
        images[0].reshape(-1).tolist()
    )
    scores = tf.saved_model.load(str(path)).signatures["classify_coarse"](
        inputs=tf.constant(export_classify.serialized_examples({"image": images}))
    )["scores"]
    np.testing.assert_allclose(
        scores, LoadedModel(path).run({"image": images}, "serve")["coarse"], atol=1e-6
    )


def test_the_client_classifies_and_regresses_alike_over_rest_and_grpc(server, models):
    rows = helpers.tabular_rows(3)
    expected = _predicted(models, rows)
    with Client(server.rest_url, grpc=server.grpc_target) as client:
        rest = client.classify("tabular", rows, "classify_income")
        grpc_answer = client.grpc_classify("tabular", rows, "classify_income")
        assert [[label for label, _ in row] for row in rest] == [INCOME_CLASSES] * 3
        assert [[label for label, _ in row] for row in grpc_answer] == [
            INCOME_CLASSES
        ] * 3
        for answer in (rest, grpc_answer):
            assert [row[1][1] for row in answer] == pytest.approx(
                expected["income"].reshape(-1).tolist(), abs=1e-6
            )
        context = {"workclass": rows[0]["workclass"]}
        partial = [{k: v for k, v in rows[0].items() if k != "workclass"}]
        for call in (client.regress, client.grpc_regress):
            assert call(
                "tabular", partial, "regress_marital_status", context=context, version=1
            ) == pytest.approx([float(expected["marital_status"][0, 0])], abs=1e-6)
        with pytest.raises(ServingError, match="expecting type: float"):
            client.grpc_classify("tabular", [{"age": [1.0, "x"]}], "classify_income")


def test_a_batched_server_merges_classify_requests_and_answers_each_its_rows(
    models,
):
    with ModelServer(
        [ServedModelConfig("tabular", str(models["tabular"].parent))],
        rest_api_port=helpers.free_port(),
        grpc_port=helpers.free_port(),
        poll_wait_seconds=0,
        batching=BatchingParameters(max_batch_size=16, num_batch_threads=1),
    ) as server:
        model = server.registry.resolve(ModelSpec("tabular")).model
        real_run, sizes = model.run, []

        def slow_run(tensors, signature_name="serving_default"):
            if signature_name == "classify_income":
                sizes.append(len(tensors["inputs"]))
            time.sleep(0.01)  # lets batches form on a fast machine too
            return real_run(tensors, signature_name)

        model.run = slow_run
        answers, failures = {}, []

        def client_loop(index):
            with Client(server.rest_url, grpc=server.grpc_target) as client:
                call = client.classify if index % 2 else client.grpc_classify
                for request in range(3):
                    rows = helpers.tabular_rows(
                        1 + index % 3, seed=10 * index + request
                    )
                    try:
                        answers[(index, request)] = (
                            rows,
                            call("tabular", rows, "classify_income"),
                        )
                    except ServingError as error:
                        failures.append(error)

        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert failures == [] and len(answers) == 24
    assert max(sizes) > 3  # requests of 1 to 3 Examples were merged
    for rows, answer in answers.values():
        expected = _predicted(models, rows)["income"].reshape(-1)
        assert [row[1][1] for row in answer] == pytest.approx(
            expected.tolist(), abs=1e-6
        )


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """A SavedModel as `tf.saved_model.save` writes it: two signatures of
    classify shape, each reading its own placeholder; `serving_default` has
    the predict method name, `other` one that is no TF Serving method."""

    def classify(inputs):
        x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})
        scores = tf.stack([tf.sigmoid(-x["x"]), tf.sigmoid(x["x"])], axis=1)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(scores)[0], 1])
        return {"classes": classes, "scores": scores}

    spec = [tf.TensorSpec([None], tf.string, name="inputs")]
    module = tf.Module()
    module.classify = tf.function(classify, input_signature=spec)
    module.other = tf.function(classify, input_signature=spec)
    path = tmp_path_factory.mktemp("native") / "native" / "1"
    tf.saved_model.save(
        module,
        str(path),
        signatures={"serving_default": module.classify, "other": module.other},
    )
    saved_model = saved_model_pb2.SavedModel.FromString(
        (path / "saved_model.pb").read_bytes()
    )
    saved_model.meta_graphs[0].signature_def["other"].method_name = "custom/method"
    (path / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    return path


def _x_examples(*values):
    return [{"x": value} for value in values]


def test_method_names_are_checked_only_with_the_flag_as_in_tf_serving(native):
    """Off (TF Serving's default), a signature of classify shape answers
    Classify whatever its method name, and Predict runs any signature; on,
    only signatures of the matching method name do."""
    sigmoid = 1 / (1 + np.exp(-np.array([0.5, -2.0])))
    for check in (False, True):
        with (
            helpers.model_server(
                {"native": native}, enable_signature_method_name_check=check
            ) as server,
            Client(server.rest_url, grpc=server.grpc_target) as client,
        ):
            if check:
                with pytest.raises(ServingError) as caught:
                    client.classify("native", _x_examples(0.5), "serving_default")
                assert caught.value.message == (
                    "Expected classification signature method_name to be "
                    "tensorflow/serving/classify. Was: tensorflow/serving/predict"
                )
                with pytest.raises(ServingError) as caught:
                    client.grpc_classify("native", _x_examples(0.5), "other")
                assert "Was: custom/method" in caught.value.message
                with pytest.raises(ServingError, match="method_name to be one of"):
                    _predict_other(client)
                continue
            for call in (client.classify, client.grpc_classify):
                answer = call("native", _x_examples(0.5, -2.0), "serving_default")
                assert [[label for label, _ in row] for row in answer] == [
                    ["neg", "pos"]
                ] * 2
                assert [row[1][1] for row in answer] == pytest.approx(sigmoid.tolist())
            assert _predict_other(client)["scores"].shape == (1, 2)
            # each signature reads its own placeholder: one session run of
            # TF Serving cannot feed both, and keras-mtl serve refuses alike
            request = inference_pb2.MultiInferenceRequest()
            for signature in ("serving_default", "other"):
                task = request.tasks.add()
                task.model_spec.name, task.model_spec.signature_name = (
                    "native",
                    signature,
                )
                task.method_name = CLASSIFY
            request.input.example_list.examples.add()
            with grpc.insecure_channel(server.grpc_target) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                with pytest.raises(grpc.RpcError) as caught:
                    stub.MultiInference(request, timeout=30)
            assert caught.value.details() == (
                "Input tensor must be the same for all Signatures."
            )


def _predict_other(client):
    (serialized,) = export_classify.serialized_examples({"x": np.array([1.0])})
    return client.grpc_predict(
        "native", {"inputs": np.array([serialized], object)}, signature_name="other"
    )


def test_the_export_checks_that_one_session_run_answers_every_head(
    tmp_path, monkeypatch
):
    """Without the shared input the export's check fails before the version
    is renamed into place."""
    monkeypatch.setattr(export_classify, "_share_input", lambda *args: None)
    with pytest.raises(RuntimeError, match="signatures read"):
        helpers.export_tabular(tmp_path, class_names={})
    assert list((tmp_path / "tabular").iterdir()) == []


def test_runtime_latency_is_recorded_under_each_api(models):
    rows = helpers.tabular_rows(1)

    def counts(client):
        _, page = client.request("GET", "/m")
        prefix = ':tensorflow:serving:runtime_latency_count{model_name="tabular",API="'
        return {
            line[len(prefix) :].split('"')[0]: int(line.rsplit(" ", 1)[1])
            for line in page.decode().splitlines()
            if line.startswith(prefix)
        }

    with (
        helpers.model_server(
            {"tabular": models["tabular"]}, monitoring=MonitoringConfig(True, "/m")
        ) as server,
        Client(server.rest_url, grpc=server.grpc_target) as client,
    ):
        before = counts(client)  # (the warm-up records ran)
        client.classify("tabular", rows, "classify_income")
        client.grpc_regress("tabular", rows, "regress_marital_status")
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            _multi_call(("tabular", "classify_income"))(stub)
        after = counts(client)
    assert {api: after[api] - before.get(api, 0) for api in after} == {
        "Predict": 0,
        "Classify": 1,
        "Regress": 1,
        "MultiInference": 1,
    }
