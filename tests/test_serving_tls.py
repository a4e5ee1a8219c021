"""TLS from TF Serving's `--ssl_config_file` on the gRPC and REST ports."""

import http.client
import json
import shutil
import ssl
import subprocess

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_mtl.serving import (
    BatchingParameters,
    ModelServer,
    ModelSpec,
    ServedModelConfig,
)
from keras_mtl.serving.model_config import read_ssl_config_file
from keras_mtl.serving.tls import SSLConfig

import serving_helpers as helpers


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for localhost / 127.0.0.1 and its key (PEM)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
         "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"),
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return (directory / "key.pem").read_text(), (directory / "cert.pem").read_text()


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    return helpers.export_tabular(tmp_path_factory.mktemp("saved_models"))


def start(tabular, ssl_config, batching=None):
    return ModelServer(
        [ServedModelConfig("tabular", str(tabular.parent))],
        rest_api_port=helpers.free_port(),
        grpc_port=helpers.free_port(),
        poll_wait_seconds=0,
        ssl_config=ssl_config,
        batching=batching,
    )


def rest_status(server, context):
    connection = http.client.HTTPSConnection(
        "127.0.0.1", server.rest_port, timeout=10, context=context
    )
    try:
        connection.request("GET", "/v1/models/tabular")
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def grpc_status(server, credentials):
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(server.grpc_target, credentials, options) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "tabular"
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        return stub.GetModelStatus(request, timeout=10)


def client_context(cert, key_file=None, cert_file=None):
    context = ssl.create_default_context(cadata=cert)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


@pytest.mark.parametrize(
    "batching",
    [None, BatchingParameters(max_batch_size=8, num_batch_threads=1)],
    ids=["synchronous gRPC", "batched, grpc.aio"],
)
def test_both_ports_serve_tls(tabular, certificate, batching):
    key, cert = certificate
    with start(tabular, SSLConfig(key, cert), batching) as server:
        assert server.rest_url.startswith("https://")
        status, answer = rest_status(server, client_context(cert))
        assert status == 200
        assert answer["model_version_status"][0]["state"] == "AVAILABLE"
        for _ in range(3):  # kept-alive connections and repeated handshakes
            assert rest_status(server, client_context(cert))[0] == 200
        response = grpc_status(server, grpc.ssl_channel_credentials(cert.encode()))
        assert response.model_version_status[0].version == 1
        specs = server.registry.resolve(ModelSpec("tabular")).model.input_specs
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "tabular"
        for name, value in helpers.columns(helpers.tabular_rows(2), specs).items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        options = [("grpc.ssl_target_name_override", "localhost")]
        credentials = grpc.ssl_channel_credentials(cert.encode())
        with grpc.secure_channel(server.grpc_target, credentials, options) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            answer = stub.Predict(request, timeout=10)
        assert list(answer.outputs["income"].tensor_shape.dim)[0].size == 2
        with pytest.raises(grpc.RpcError) as caught:  # plaintext is refused
            with grpc.insecure_channel(server.grpc_target) as channel:
                request = get_model_status_pb2.GetModelStatusRequest()
                request.model_spec.name = "tabular"
                model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                    request, timeout=3
                )
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_verify_refuses_clients_without_a_certificate(
    tabular, certificate, tmp_path
):
    key, cert = certificate
    (tmp_path / "key.pem").write_text(key)
    (tmp_path / "cert.pem").write_text(cert)
    config = tmp_path / "ssl.config"
    config.write_text(
        f"server_key: {json.dumps(key)}\nserver_cert: {json.dumps(cert)}\n"
        f"custom_ca: {json.dumps(cert)}\nclient_verify: true\n"
    )
    ssl_config = read_ssl_config_file(config)
    assert ssl_config.client_verify and ssl_config.custom_ca == cert
    with start(tabular, ssl_config) as server:
        with_cert = client_context(cert, tmp_path / "key.pem", tmp_path / "cert.pem")
        assert rest_status(server, with_cert)[0] == 200
        with pytest.raises((ssl.SSLError, ConnectionError)):
            rest_status(server, client_context(cert))
        credentials = grpc.ssl_channel_credentials(
            cert.encode(), key.encode(), cert.encode()
        )
        assert grpc_status(server, credentials).model_version_status
        with pytest.raises(grpc.RpcError) as caught:
            grpc_status(server, grpc.ssl_channel_credentials(cert.encode()))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert rest_status(server, with_cert)[0] == 200  # the server is fine


def test_an_incomplete_ssl_config_is_refused(certificate):
    key, cert = certificate
    with pytest.raises(ValueError, match="needs `custom_ca`"):
        SSLConfig(key, cert, client_verify=True)
    with pytest.raises(ValueError, match="must hold PEM text"):
        SSLConfig("", cert)
    with pytest.raises(ValueError, match="not a matching PEM key"):
        SSLConfig(key, key).ssl_context()
