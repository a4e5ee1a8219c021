"""Where a REST `:predict` spends its time inside the server's process.

    python benchmarks/serving_profile.py [--calls N]

Exports the serving benchmark's two models, starts a `ModelServer` with no
open port, and calls its request function (`ModelServer.app`, what each
REST worker runs: parse, check, run the model, answer) directly with the
benchmark's bodies: adult at batch 1 and shapes at batch 64. Prints the
median milliseconds of a call against the model call alone
(`LoadedModel.run` on arrays of the signature's dtypes, back to back), then
the request's stages run one after another as the server runs them (decode
the JSON, of which the numeric fast path and its array reader inside it: the
compiled scanner, or simdjson where it is not built; check and
run the model; encode the answer), the parts of the model call (making the
input tensors with `tensor_maker` and with `tf.constant`; the signature's
public call and the direct call `LoadedModel.run` keeps, on ready tensors;
the direct call with each executor, 1 ms apart as between requests),
then the functions that took the most time under cProfile (`PROFILE_SORT`,
`PROFILE_LINES`). What is left of the
served latency beyond the request function is the HTTP front and the client.
"""

import argparse
import collections
import cProfile
import json
import os
import pstats
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import bench_serving  # noqa: E402
import numpy as np  # noqa: E402

import harness  # noqa: E402


def _stages(server, name, body, calls):
    """Median ms of each stage of `calls` requests, run as the server runs
    them, with the numeric fast path and its array reader inside it (the
    compiled scanner, or simdjson where it is not built) timed too."""
    from keras_mtl.serving import json_numeric, json_predict
    from keras_mtl.serving.gc_pause import paused_gc
    from keras_mtl.serving.registry import ModelSpec

    times = collections.defaultdict(list)

    def timed(label, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                times[label].append(1000 * (time.perf_counter() - start))

        return wrapper

    originals = (
        json_predict.parse_with_arrays,
        json_numeric._found_compiled,
        json_numeric._flat,
    )
    json_predict.parse_with_arrays = timed("  numeric fast path", originals[0])
    json_numeric._found_compiled = timed("    compiled scanner", originals[1])
    json_numeric._flat = timed("    simdjson", originals[2])
    predictor = server.predictor
    servable = predictor.servable(ModelSpec(name))
    try:
        for _ in range(calls):
            start = time.perf_counter()
            with paused_gc(len(body)):
                request = json_predict.predict_request_from_json(
                    body, lambda key: predictor.input_infos(servable, key)
                )
            decoded = time.perf_counter()
            outputs = predictor.predict(
                servable, request.signature_name, request.inputs
            )
            predicted = time.perf_counter()
            json_predict.tensors_to_json(outputs, request.format)
            done = time.perf_counter()
            times["decode"].append(1000 * (decoded - start))
            times["check and run the model"].append(1000 * (predicted - decoded))
            times["encode"].append(1000 * (done - predicted))
    finally:
        (
            json_predict.parse_with_arrays,
            json_numeric._found_compiled,
            json_numeric._flat,
        ) = originals
    order = ["decode", "  numeric fast path", "    compiled scanner", "    simdjson"]
    order += ["check and run the model", "encode"]
    for label in order:
        if times[label]:
            print(f"  {label}: {np.median(times[label]):.3f} ms")


def _model_call(loaded, columns, calls):
    """Median ms of the parts of `LoadedModel.run`, each back to back."""
    import tensorflow as tf

    specs = loaded.input_specs
    make = loaded._make_tensor
    tensors = {name: make(value, specs[name].dtype) for name, value in columns.items()}
    arguments = {
        argument: spec.name or argument
        for argument, spec in loaded.signature.structured_input_signature[1].items()
    }
    keywords = {argument: tensors[name] for argument, name in arguments.items()}
    direct = loaded._direct_calls["serving_default"]
    parts = {
        "making the inputs (tensor_maker)": lambda: [
            make(value, specs[name].dtype) for name, value in columns.items()
        ],
        "making the inputs (tf.constant)": lambda: [
            tf.constant(value, specs[name].dtype) for name, value in columns.items()
        ],
        "the public call on ready tensors": lambda: loaded.signature(**keywords),
    }
    if direct:
        parts[f"the direct call ({loaded.executor['serving_default']} executor)"] = (
            lambda: direct(tensors)
        )
    print("the model call, median of each part:")
    for label, function in parts.items():
        print(f"  {label}: {_median_ms(function, calls):.3f} ms")
    # Between requests a server waits; TensorFlow's default executor hands
    # kernels to inter-op threads that have gone to sleep meanwhile.
    from keras_mtl.compat.tf_function import SINGLE_THREADED_EXECUTOR, direct_call

    print("the direct call, 1 ms apart (time.sleep), median:")
    for label, executor in (
        ("default executor", ""),
        ("single-threaded executor", SINGLE_THREADED_EXECUTOR),
    ):
        call = direct_call(loaded.signature, executor)
        times = []
        for _ in range(calls):
            time.sleep(0.001)
            start = time.perf_counter()
            call(tensors)
            times.append(time.perf_counter() - start)
        print(f"  {label}: {1000 * float(np.median(times)):.3f} ms")


CASES = (("adult", 1), ("shapes", 64))


def _median_ms(function, calls):
    return 1000 * harness.median_time(function, repeats=calls, warmup=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    from keras_mtl.serving import ModelServer, ServedModelConfig
    from keras_mtl.serving.registry import ModelSpec

    base = tempfile.mkdtemp(prefix="keras-mtl-serving-profile-")
    bench_serving._export_models(base)
    configs = [ServedModelConfig(name, f"{base}/{name}") for name, _ in CASES]
    server = ModelServer(configs, rest_api_port=0, grpc_port=0).start()
    try:
        for name, batch in CASES:
            rng = np.random.default_rng(0)
            rows = bench_serving._rows(name, batch, rng)
            body = memoryview(json.dumps({"instances": rows}).encode())
            target = f"/v1/models/{name}:predict"
            loaded = server.predictor.servable(ModelSpec(name)).model
            columns = bench_serving._columns(rows, loaded.input_specs)

            def request(target=target, body=body):
                status, payload, _ = server.app("POST", target, body)
                assert status == 200, payload[:300]

            def model(loaded=loaded, columns=columns):
                loaded.run(columns)

            calls = max(20, args.calls // batch)
            for _ in range(5):
                request()
                model()
            request_ms = _median_ms(request, calls)
            model_ms = _median_ms(model, calls)
            print(
                f"\n{name}, batch {batch} ({len(body):,} bytes): request function "
                f"{request_ms:.3f} ms, model call {model_ms:.3f} ms "
                f"(median of {calls})"
            )
            print("stages, median of each:")
            _stages(server, name, body, calls)
            _model_call(loaded, columns, calls)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(calls):
                request()
            profile.disable()
            pstats.Stats(profile).sort_stats(
                os.environ.get("PROFILE_SORT", "tottime")
            ).print_stats(int(os.environ.get("PROFILE_LINES", "12")))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
