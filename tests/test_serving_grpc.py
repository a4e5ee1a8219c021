"""gRPC PredictionService and ModelService: the stock stubs, answers equal to REST."""

import json
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_mtl.saved_model import LoadedModel
from keras_mtl.serving import Client, ServingError
from keras_mtl.serving.predictor import op_error_message

import serving_helpers as helpers


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    return {
        "tabular": helpers.export_tabular(base),
        "image": helpers.export_image(base),
    }


@pytest.fixture(scope="module")
def server(models):
    with helpers.model_server(models, version_labels={"stable": 1}) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    with Client(server.rest_url, grpc=server.grpc_target) as client:
        yield client


def test_the_stock_stub_predicts_what_the_saved_model_computes(server, models):
    images = helpers.image_batch(3)
    expected = LoadedModel(models["image"]).predict({"image": images})
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "image"
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(images))
        response = stub.Predict(request, timeout=30)
    assert response.model_spec.name == "image"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    assert sorted(response.outputs) == ["coarse", "fine"]
    for name, value in expected.items():
        np.testing.assert_array_equal(tf.make_ndarray(response.outputs[name]), value)


def test_grpc_answers_equal_rest_answers(client):
    rows = helpers.tabular_rows(3, seed=7)
    rest = client.predict("tabular", instances=rows)
    inputs = {
        "age": np.array([r["age"] for r in rows], np.float32),
        "hours-per-week": np.array([r["hours-per-week"] for r in rows], np.float32),
        "workclass": np.array([r["workclass"].encode() for r in rows], object),
    }
    by_grpc = client.grpc_predict("tabular", inputs, label="stable")
    for name in ("income", "marital_status"):
        np.testing.assert_array_equal(
            by_grpc[name], np.array([r[name] for r in rest], np.float32)
        )
    only = client.grpc_predict("tabular", inputs, output_filter=["income"])
    assert list(only) == ["income"]
    np.testing.assert_array_equal(only["income"], by_grpc["income"])

    status = json_format.MessageToDict(
        client.grpc_status("tabular"),
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    assert status == client.status("tabular")

    metadata = client.grpc_metadata("image", version=1)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signature_defs)
    rest = client.metadata("image", version=1)
    assert (
        json_format.MessageToDict(
            signature_defs,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        == rest["metadata"]["signature_def"]
    )
    assert metadata.model_spec.version.value == 1


def tabular_inputs(**overrides):
    inputs = {
        "age": np.array([30.0], np.float32),
        "hours-per-week": np.array([40.0], np.float32),
        "workclass": np.array([b"Private"], object),
    }
    inputs.update(overrides)
    return {name: value for name, value in inputs.items() if value is not None}


@pytest.mark.parametrize(
    "model, inputs, options, code, fragment",
    [
        ("nope", tabular_inputs(), {}, "NOT_FOUND", "Latest(nope)"),
        (
            "tabular",
            tabular_inputs(),
            {"version": 9},
            "NOT_FOUND",
            "Specific(tabular, 9)",
        ),
        (
            "tabular",
            tabular_inputs(),
            {"label": "canary"},
            "INVALID_ARGUMENT",
            "Unrecognized servable version label: canary",
        ),
        (
            "tabular",
            tabular_inputs(age=np.array([b"x"], object)),
            {},
            "INVALID_ARGUMENT",
            "Expects arg[0] to be float but string is provided",
        ),
        (
            "tabular",
            tabular_inputs(workclass=None),
            {},
            "INVALID_ARGUMENT",
            "Missing but required: {workclass}",
        ),
        (
            "tabular",
            tabular_inputs(extra=np.array([1.0], np.float32)),
            {},
            "INVALID_ARGUMENT",
            "Sent extra: {extra}",
        ),
        (
            "tabular",
            tabular_inputs(),
            {"output_filter": ["nope"]},
            "INVALID_ARGUMENT",
            "output tensor alias not found in signature: nope",
        ),
        (
            "tabular",
            tabular_inputs(),
            {"output_filter": ["income", "income"]},
            "INVALID_ARGUMENT",
            "duplicate output tensor alias: income",
        ),
        (
            "tabular",
            tabular_inputs(),
            {"signature_name": "nope"},
            "FAILED_PRECONDITION",
            'Serving signature key "nope" not found.',
        ),
        (
            "image",
            {"image": np.zeros((1, 4, 4, 3), np.float32)},
            {},
            "INVALID_ARGUMENT",
            "expects shape [-1,8,8,3]",
        ),
    ],
)
def test_grpc_errors_carry_tf_serving_codes(
    client, model, inputs, options, code, fragment
):
    with pytest.raises(ServingError) as caught:
        client.grpc_predict(model, inputs, **options)
    assert caught.value.code.name == code
    assert fragment in caught.value.message
    assert client.grpc_predict("tabular", tabular_inputs())["income"].shape == (1, 1)


def test_classify_and_multi_inference_refuse_a_model_without_such_signatures(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "tabular"
        request.input.example_list.examples.add()
        with pytest.raises(grpc.RpcError) as caught:
            stub.Classify(request, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # (three named inputs, not one of serialized Examples)
        assert caught.value.details() == "Expected one input Tensor."
        with pytest.raises(grpc.RpcError) as caught:
            stub.MultiInference(inference_pb2.MultiInferenceRequest(), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Found no tasks" in caught.value.details()


def test_a_tiny_request_declaring_a_huge_shape_is_refused_before_decoding(server):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "image"
    proto = request.inputs["image"]
    proto.dtype = tf.float32.as_datatype_enum
    for size in (30000, 32, 32, 3):  # 368 MB of float32 from one float_val
        proto.tensor_shape.dim.add().size = size
    proto.float_val.append(0.5)
    assert request.ByteSize() < 100
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        start = time.perf_counter()
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(request, timeout=30)
        assert time.perf_counter() - start < 1.0
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    details = caught.value.details()
    assert "368640000 bytes" in details and "--max_request_tensor_bytes" in details
    assert "[30000,32,32,3]" in details
    assert server.budget.in_flight == 0


def test_a_batch_of_zero_rows_answers_zero_rows_without_graph_internals(client):
    image = client.grpc_predict("image", {"image": np.zeros((0, 8, 8, 3), np.float32)})
    one = client.grpc_predict("image", {"image": helpers.image_batch(1)})
    assert {name: value.shape for name, value in image.items()} == {
        name: (0,) + value.shape[1:] for name, value in one.items()
    }
    assert {name: value.dtype for name, value in image.items()} == {
        name: value.dtype for name, value in one.items()
    }
    empty = {
        "age": np.zeros((0,), np.float32),
        "hours-per-week": np.zeros((0,), np.float32),
        "workclass": np.zeros((0,), object),
    }
    tabular = client.grpc_predict("tabular", empty)
    assert tabular["income"].shape == (0, 1)
    status, body = client.request(
        "POST",
        "/v1/models/tabular:predict",
        b'{"inputs": {"age": [], "hours-per-week": [], "workclass": []}}',
    )
    assert status == 200 and json.loads(body) == {
        "outputs": {"income": [], "marital_status": []}
    }
    for body in (b'{"instances": []}', b'{"inputs": {"image": []}}'):
        status, answer = client.request("POST", "/v1/models/image:predict", body)
        assert status == 400 and "node" not in answer.decode()


def test_model_errors_lose_node_names_and_stacks():
    message = (
        "Graph execution error:\n\nDetected at node StatefulPartitionedCall/model/"
        "dense/Relu defined at (most recent call last):\n<stack traces unavailable>\n"
        "Matrix size-incompatible: In[0]: [0,3], In[1]: [4,8]\n\t [[{{node "
        "StatefulPartitionedCall/model/dense/Relu}}]] [Op:__inference_signature_2793]"
    )
    assert op_error_message(message) == (
        "Matrix size-incompatible: In[0]: [0,3], In[1]: [4,8]"
    )
    # as a signature's function called directly words it (LoadedModel.run)
    direct = (
        "{{function_node __inference_signature_wrapper___call___445}} ConcatOp : "
        "Dimension 0 in both shapes must be equal: shape[0] = [2,1] vs. shape[1] "
        "= [1,1] [Op:__inference_signature_wrapper___call___445]"
    )
    assert op_error_message(direct) == (
        "ConcatOp : Dimension 0 in both shapes must be equal: shape[0] = [2,1] vs. "
        "shape[1] = [1,1]"
    )
