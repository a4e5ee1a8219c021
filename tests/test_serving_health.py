"""The gRPC health checking service (`grpc.health.v1`), one service per model."""

import grpc
import pytest

from keras_mtl.serving import ModelServer, ServedModelConfig

import serving_helpers as helpers

health_pb2 = pytest.importorskip("grpc_health.v1.health_pb2")
health_pb2_grpc = pytest.importorskip("grpc_health.v1.health_pb2_grpc")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def check(stub, service):
    request = health_pb2.HealthCheckRequest(service=service)
    return stub.Check(request, timeout=10).status


def test_each_model_is_serving_while_a_version_is_available(tmp_path):
    source = helpers.export_tabular(tmp_path / "source")
    empty = tmp_path / "models" / "later"
    empty.mkdir(parents=True)
    configs = [
        ServedModelConfig("tabular", str(source.parent)),
        ServedModelConfig("later", str(empty)),
    ]
    with ModelServer(
        configs, rest_api_port=0, grpc_port=helpers.free_port(), poll_wait_seconds=0
    ) as server:
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert check(stub, "") == SERVING
            assert check(stub, "tabular") == SERVING
            assert check(stub, "later") == NOT_SERVING
            with pytest.raises(grpc.RpcError) as caught:
                check(stub, "unknown")
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND

            helpers.copy_version(source, empty, 3)
            server.registry.poll()
            assert check(stub, "later") == SERVING
            helpers.shutil.rmtree(empty / "3")
            server.registry.poll()  # its last version removed: unloaded
            assert check(stub, "later") == NOT_SERVING

            server.health.shutdown()  # what stop() does first
            assert check(stub, "") == NOT_SERVING
            assert check(stub, "tabular") == NOT_SERVING
