"""Where a gRPC `Predict` of the adult model at batch 1 spends its time.

    python benchmarks/grpc_profile.py [--calls N]

Starts one server process with three gRPC ports, all answering
`PredictionService/Predict` with the stock protos, and calls each from this
process with the serving benchmark's batch-1 request (12 input tensors):

- `protos only`: the handler returns a ready response. What is left is
  grpcio (client and server), and parsing and writing the protos.
- `+ model call`: the handler also runs `LoadedModel.run` on arrays made
  beforehand, and times it; the server prints that time.
- `keras-mtl servicer`: the port of a `ModelServer` (`PredictionService`:
  proto -> arrays, checks, model call, arrays -> proto, metrics).

Prints the p50 / p99 of each (interleaved rounds), the model call's median
inside the handler, and the same call's median in a loop in this process.
The differences say what each layer adds. Last, the median time of the
servicer's decoding of the request's inputs (shapes, size check, arrays),
in a loop in this process.
"""

import argparse
import multiprocessing
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bench_serving  # noqa: E402
import numpy as np  # noqa: E402

import harness  # noqa: E402

NAMES = ("protos only", "+ model call", "keras-mtl servicer")
SERVICE = "tensorflow.serving.PredictionService"


def _decode(request):
    """What `PredictionService._decoded` does to a request's inputs before
    the budget and the model: read the shapes, check the decoded size, make
    the arrays."""
    from keras_mtl.serving.grpc_server import PredictionService
    from keras_mtl.serving.tensor_proto import tensor_dims
    from keras_mtl.serving.tensor_size import check_decoded_size

    dims = {alias: tensor_dims(tensor) for alias, tensor in request.inputs.items()}
    check_decoded_size(request.inputs, None, dims)
    return PredictionService._inputs(request, _NO_DEADLINE, dims)


class _NoDeadline:
    @staticmethod
    def time_remaining():
        return None


_NO_DEADLINE = _NoDeadline()


def _rows():
    return bench_serving._rows("adult", 1, np.random.default_rng(0))


def _serve(base, ports, ready, warmup, calls):
    """The server process: two bare handlers and a ModelServer."""
    import concurrent.futures

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from keras_mtl.serving import ModelServer, ServedModelConfig
    from keras_mtl.serving.registry import ModelSpec

    server = ModelServer(
        [ServedModelConfig("adult", f"{base}/adult")],
        rest_api_port=0,
        grpc_port=ports[2],
    ).start()
    loaded = server.predictor.servable(ModelSpec("adult")).model
    columns = bench_serving._columns(_rows(), loaded.input_specs)
    response = predict_pb2.PredictResponse()
    for name, value in loaded.run(columns).items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    inside = []

    def protos_only(request, context):
        return response

    def with_model(request, context):
        start = time.perf_counter()
        loaded.run(columns)
        inside.append(time.perf_counter() - start)
        if len(inside) == warmup + calls:
            print(
                f"model call inside the handler: median "
                f"{1000 * float(np.median(inside[warmup:])):.3f} ms",
                flush=True,
            )
        return response

    servers = []
    for port, function in zip(ports, (protos_only, with_model), strict=False):
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Predict": grpc.unary_unary_rpc_method_handler(
                    function,
                    request_deserializer=predict_pb2.PredictRequest.FromString,
                    response_serializer=predict_pb2.PredictResponse.SerializeToString,
                )
            },
        )
        bare = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=16))
        bare.add_generic_rpc_handlers((handler,))
        bare.add_insecure_port(f"127.0.0.1:{port}")
        bare.start()
        servers.append(bare)
    ready.set()
    time.sleep(3600)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from keras_mtl.saved_model import LoadedModel

    base = tempfile.mkdtemp(prefix="keras-mtl-grpc-profile-")
    bench_serving._export_models(base)
    ports = [bench_serving._free_port() for _ in NAMES]
    context = multiprocessing.get_context("spawn")  # TensorFlow does not fork.
    ready = context.Event()
    warmup = 100
    process = context.Process(
        target=_serve,
        args=(base, ports, ready, warmup, args.calls * args.rounds),
        daemon=True,
    )
    process.start()
    try:
        if not ready.wait(300):
            raise RuntimeError("the profile's server did not start")
        loaded = LoadedModel(f"{base}/adult")
        columns = bench_serving._columns(_rows(), loaded.input_specs)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "adult"
        for name, value in columns.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        stubs = {
            name: grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary(
                f"/{SERVICE}/Predict",
                request_serializer=predict_pb2.PredictRequest.SerializeToString,
                response_deserializer=predict_pb2.PredictResponse.FromString,
            )
            for name, port in zip(NAMES, ports, strict=True)
        }
        for stub in stubs.values():
            for _ in range(warmup):
                stub(request, timeout=60)
        times = {name: [] for name in NAMES}
        for _ in range(args.rounds):
            for name, stub in stubs.items():
                for _ in range(args.calls):
                    start = time.perf_counter()
                    stub(request, timeout=60)
                    times[name].append(time.perf_counter() - start)
        time.sleep(0.5)  # the server prints its median
        for name, values in times.items():
            p50, p99 = (1000 * np.percentile(values, q) for q in (50, 99))
            print(f"{name:20s} p50 {p50:.3f} ms  p99 {p99:.3f} ms")
        loop = 1000 * harness.median_time(
            lambda: loaded.run(columns), repeats=args.calls, warmup=20
        )
        print(f"model call in a loop in this process: median {loop:.3f} ms")
        decode = 1e6 * harness.median_time(
            lambda: _decode(request), repeats=args.calls * 10, warmup=100
        )
        print(
            f"the servicer's decoding of the request's inputs: median {decode:.1f} us"
        )
    finally:
        process.terminate()
        process.join()


if __name__ == "__main__":
    main()
