"""`keras-mtl serve` against calling the SavedModel in-process.

    python benchmarks/run_all.py serving [--quick]

Two models built with `keras_mtl.build_model` and exported: the `adult`
preset's architecture on raw tabular rows (5 numeric and 7 string inputs,
hyphenated names) and the `shapes` preset's on 32x32x3 images. Two servers
run as `keras-mtl serve` processes, one without batching and one with
(`max_batch_size` 128, `batch_timeout_micros` 0, one batch thread); clients
run in this process, one kept-alive connection each.

Measured side by side in one run, rounds interleaved:
- latency p50 / p99 at batch 1 and 64: in-process `signature(**tensors)`,
  REST (`:predict`, row format) and gRPC (`PredictionService.Predict`);
- throughput of batch-1 requests with 1 and 16 concurrent clients:
  in-process threads, REST and gRPC, each without and with batching.

Goals on a 2-core machine, each reported as met or not met: REST batch-1
p50 (adult) within +0.30 ms of the in-process call and its p99 within 2x its
p50; gRPC batch-1 p50 at or below REST's; REST shapes batch 64 within +10 ms
of the in-process call; with 16 clients, batching at least 1.5x the
unbatched throughput over REST and over gRPC (adult).
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import harness

NUMERIC = ("age", "education-num", "capital-gain", "capital-loss", "hours-per-week")
CATEGORICAL = {
    "workclass": ("Private", "Self-emp-not-inc", "Local-gov", "State-gov"),
    "education": ("HS-grad", "Some-college", "Bachelors", "Masters"),
    "occupation": ("Prof-specialty", "Craft-repair", "Exec-managerial", "Sales"),
    "race": ("White", "Black", "Asian-Pac-Islander", "Other"),
    "sex": ("Male", "Female"),
    "native-country": ("United-States", "Mexico", "Philippines", "Germany"),
    "marital-status-of-parents": ("Married", "Never-married"),
}


def _export_models(base_dir):
    import keras

    import keras_mtl
    from keras_mtl.data.features import (
        CategoricalFeature,
        ImageFeature,
        NumericFeature,
    )

    keras.utils.set_random_seed(0)
    tabular = [NumericFeature(name, 10.0, 100.0) for name in NUMERIC]
    tabular += [CategoricalFeature(name, vocab) for name, vocab in CATEGORICAL.items()]
    config = keras_mtl.load_config("adult")
    adult = keras_mtl.build_model(config, tabular)
    shapes = keras_mtl.build_model(
        keras_mtl.load_config("shapes"), [ImageFeature("image", (32, 32, 3))]
    )
    return {
        "adult": keras_mtl.export_saved_model(
            adult,
            base_dir,
            "adult",
            classify_tasks=[
                {"name": task.name, "kind": task.kind, "class_names": None}
                for task in config.tasks
            ],
        ),
        "shapes": keras_mtl.export_saved_model(shapes, base_dir, "shapes"),
    }


def _rows(model, batch, rng):
    if model == "shapes":
        images = rng.uniform(0, 255, (batch, 32, 32, 3)).round(2)
        return [{"image": image.tolist()} for image in images]
    rows = []
    for _ in range(batch):
        row = {name: float(rng.integers(0, 99)) for name in NUMERIC}
        row.update({name: str(rng.choice(v)) for name, v in CATEGORICAL.items()})
        rows.append(row)
    return rows


def _columns(rows, specs):
    return {
        name: np.array(
            [row[name] for row in rows],
            dtype=object if spec.dtype.name == "string" else spec.dtype.as_numpy_dtype,
        )
        for name, spec in specs.items()
    }


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# TF Serving's thread-pool flags at one thread each: the variant the latency
# table sets beside the default server
ONE_THREAD = (
    "--tensorflow_intra_op_parallelism=1",
    "--tensorflow_inter_op_parallelism=1",
)
POOLS = "TF pools 1/1"


def _start_server(base_dir, batching_file=None, flags=()):
    from keras_mtl.serving import Client

    rest, grpc = _free_port(), _free_port()
    config = Path(base_dir) / f"models-{rest}.config"
    config.write_text(
        "model_config_list {\n"
        + "".join(
            f'  config {{ name: "{name}" base_path: "{Path(base_dir) / name}" }}\n'
            for name in ("adult", "shapes")
        )
        + "}\n"
    )
    command = [
        sys.executable,
        "-m",
        "keras_mtl.cli",
        "serve",
        f"--model_config_file={config}",
        f"--rest_api_port={rest}",
        f"--port={grpc}",
        "--file_system_poll_wait_seconds=0",
    ]
    if batching_file:
        command += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
    command += list(flags)
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        text=True,
    )
    client = Client(f"127.0.0.1:{rest}", grpc=f"127.0.0.1:{grpc}")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"keras-mtl serve exited: {process.stderr.read()}")
        try:
            client.status("shapes")
            client.close()
            return process, rest, grpc
        except OSError:
            client.close()
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("keras-mtl serve did not start within 180 s")


class _Contenders:
    """One call per contender, for one model and batch size."""

    def __init__(
        self, loaded, model, batch, rest_port, grpc_port, rng, one_thread_ports=None
    ):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        rows = _rows(model, batch, rng)
        columns = _columns(rows, loaded.input_specs)
        tensors = {
            name: tf.constant(value, dtype=loaded.input_specs[name].dtype)
            for name, value in columns.items()
        }
        signature = loaded.signature
        body = json.dumps({"instances": rows}).encode()
        self.path = f"/v1/models/{model}:predict"
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        for name, value in columns.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        self.calls = {
            "in-process": lambda: signature(**tensors),
            "in-process from arrays": lambda: loaded.run(columns),
            "REST": lambda client: self._rest(client, body),
            "gRPC": lambda client: client._stubs()[0].Predict(request, timeout=60),
        }
        self.rest_port, self.grpc_port = rest_port, grpc_port
        self._one_thread = None
        if one_thread_ports:
            # the same calls to the server with one-thread TF pools
            self._one_thread = self.client(*one_thread_ports)
            self.calls[f"REST, {POOLS}"] = self.calls["REST"]
            self.calls[f"gRPC, {POOLS}"] = self.calls["gRPC"]

    def _rest(self, client, body):
        status, payload = client.request("POST", self.path, body)
        if status != 200:
            raise RuntimeError(payload[:500])

    def client(self, rest_port=None, grpc_port=None):
        from keras_mtl.serving import Client

        return Client(
            f"127.0.0.1:{rest_port or self.rest_port}",
            grpc=f"127.0.0.1:{grpc_port or self.grpc_port}",
            timeout=60,
        )

    def call(self, name, client):
        function = self.calls[name]
        if name.startswith("in-process"):
            return function()
        return function(self._one_thread if name.endswith(POOLS) else client)

    def close(self):
        if self._one_thread is not None:
            self._one_thread.close()


CLASSIFY_SIGNATURE = "classify_income"


class _ClassifyContenders(_Contenders):
    """Classify calls of the adult model's `classify_income` signature: the
    signature in-process on serialized Examples made beforehand, REST
    `:classify` and gRPC Classify."""

    def __init__(self, loaded, batch, rest_port, grpc_port, rng):
        import tensorflow as tf
        from tensorflow_serving.apis import classification_pb2

        from keras_mtl.export_classify import examples

        rows = _rows("adult", batch, rng)
        columns = _columns(rows, loaded.input_specs)
        protos = examples(columns)
        serialized = tf.constant([e.SerializeToString() for e in protos])
        signature = loaded.signatures[CLASSIFY_SIGNATURE]
        body = json.dumps({"signature_name": CLASSIFY_SIGNATURE, "examples": rows})
        body = body.encode()
        self.path = "/v1/models/adult:classify"
        request = classification_pb2.ClassificationRequest()
        request.model_spec.name = "adult"
        request.model_spec.signature_name = CLASSIFY_SIGNATURE
        request.input.example_list.examples.extend(protos)
        self.calls = {
            "in-process": lambda: signature(inputs=serialized),
            "REST": lambda client: self._rest(client, body),
            "gRPC": lambda client: client._stubs()[0].Classify(request, timeout=60),
        }
        self.rest_port, self.grpc_port = rest_port, grpc_port
        self._one_thread = None


# Calls left out of the percentiles at the start of each round: the first
# call after another contender's round finds the server idle and its caches
# cold, and with 100 calls a round those first calls alone are the p99. The
# table reports the first calls' median beside it.
ROUND_WARMUP = 3


def _latency(contenders, rounds, calls):
    """Per contender, the times (s) of the timed calls, rounds interleaved,
    and of the first call of each round (one of the `ROUND_WARMUP` calls
    left out of the percentiles)."""
    client = contenders.client()
    samples = {name: [] for name in contenders.calls}
    first = {name: [] for name in contenders.calls}
    for name in contenders.calls:  # warm-up, connection set-up
        for _ in range(5):
            contenders.call(name, client)
    for _ in range(rounds):
        for name in contenders.calls:
            for index in range(ROUND_WARMUP):
                start = time.perf_counter()
                contenders.call(name, client)
                if index == 0:
                    first[name].append(time.perf_counter() - start)
            for _ in range(calls):
                start = time.perf_counter()
                contenders.call(name, client)
                samples[name].append(time.perf_counter() - start)
    client.close()
    contenders.close()
    return samples, first


def _throughput(contenders, name, clients, seconds, ports):
    """Requests per second with `clients` threads for `seconds`."""
    counts, errors = [0] * clients, []
    start_line, stop = threading.Barrier(clients + 1), threading.Event()

    def work(index):
        client = contenders.client(*ports)
        try:
            contenders.call(name, client)
            start_line.wait()
            while not stop.is_set():
                contenders.call(name, client)
                counts[index] += 1
        except Exception as error:  # reported, not hidden
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start_line.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    if errors:
        raise RuntimeError(f"{name}: {errors[0]!r}")
    return sum(counts) / (time.perf_counter() - start)


def _percentile(values, q):
    return float(np.percentile(np.array(values) * 1e3, q))


def _goals(record):
    """The serving goals, each with what was measured and whether it is met."""
    adult = record["latency"]["adult/1"]
    p50, p99 = adult["p50_ms"], adult["p99_ms"]
    shapes = record["latency"]["shapes/64"]["p50_ms"]
    sixteen = record["throughput"]["adult/16"]
    rest_gap = p50["REST"] - p50["in-process"]
    shapes_gap = shapes["REST"] - shapes["in-process"]
    rest_gain = sixteen["REST batched"] / sixteen["REST"]
    grpc_gain = sixteen["gRPC batched"] / sixteen["gRPC"]
    rows = [
        ("REST batch-1 p50 (adult) within +0.30 ms of in-process",
         f"{rest_gap:+.3f} ms", rest_gap <= 0.30),
        ("REST batch-1 p99 (adult) within 2x its p50",
         f"{p99['REST']:.3f} / {p50['REST']:.3f} ms "
         f"({p99['REST'] / p50['REST']:.2f}x)", p99["REST"] <= 2 * p50["REST"]),
        ("gRPC batch-1 p50 (adult) at or below REST's",
         f"{p50['gRPC']:.3f} vs {p50['REST']:.3f} ms", p50["gRPC"] <= p50["REST"]),
        ("REST shapes batch 64 p50 within +10 ms of in-process",
         f"{shapes_gap:+.3f} ms", shapes_gap <= 10.0),
        ("REST batching, 16 clients (adult) >= 1.5x unbatched",
         f"{rest_gain:.2f}x", rest_gain >= 1.5),
        ("gRPC batching, 16 clients (adult) >= 1.5x unbatched",
         f"{grpc_gain:.2f}x", grpc_gain >= 1.5),
    ]  # fmt: skip
    return [
        {"goal": goal, "measured": measured, "met": bool(met)}
        for goal, measured, met in rows
    ]


def _decode_cpu(loaded, rounds):
    """CPU ms (this thread) to decode the shapes batch-64 `:predict` body:
    with the numeric fast path (`json_numeric`) and its compiled scanner,
    with the fast path on its pysimdjson fallback, and as JSON lists,
    alternated; medians, with the garbage collector paused as the server
    pauses it. The served latency adds the wait for a CPU on a busy
    machine."""
    from keras_mtl.serving import json_numeric, json_predict
    from keras_mtl.serving.gc_pause import paused_gc

    body = json.dumps({"instances": _rows("shapes", 64, np.random.default_rng(1))})
    body = body.encode()
    specs = loaded.input_specs
    fast, scanner = json_predict.parse_with_arrays, json_numeric._json_numbers
    ways = [("numeric fast path", fast, scanner)] if scanner else []
    ways += [("fast path on pysimdjson", fast, None), ("JSON lists", None, None)]
    times = {name: [] for name, _, _ in ways}
    try:
        for _ in range(rounds):
            for name, parse, compiled in ways:
                json_predict.parse_with_arrays = parse or (lambda raw: None)
                json_numeric._json_numbers = compiled
                start = time.thread_time()
                with paused_gc(len(body)):  # as the server decodes
                    json_predict.predict_request_from_json(body, lambda name: specs)
                times[name].append((time.thread_time() - start) * 1e3)
    finally:
        json_predict.parse_with_arrays, json_numeric._json_numbers = fast, scanner
    return {name: statistics.median(values) for name, values in times.items()}


def run(quick=False):
    from keras_mtl.saved_model import LoadedModel

    rounds, calls = (3, 30) if quick else (7, 100)
    seconds, throughput_rounds = (1.0, 1) if quick else (3.0, 3)
    rng = np.random.default_rng(0)
    temporary = tempfile.TemporaryDirectory(prefix="bench-serving-")
    base = Path(temporary.name)
    paths = _export_models(base)
    loaded = {name: LoadedModel(path) for name, path in paths.items()}
    batching = base / "batching.config"
    batching.write_text(
        "max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 1000 }\nnum_batch_threads { value: 1 }\n"
    )
    plain, plain_rest, plain_grpc = _start_server(base)
    batched, batched_rest, batched_grpc = _start_server(base, batching)
    one_thread, one_thread_rest, one_thread_grpc = _start_server(base, flags=ONE_THREAD)
    latency_rows, throughput_rows, record = [], [], {"latency": {}, "throughput": {}}
    classify_rows = []
    try:
        for model in ("adult", "shapes"):
            for batch in (1, 64):
                contenders = _Contenders(
                    loaded[model],
                    model,
                    batch,
                    plain_rest,
                    plain_grpc,
                    rng,
                    (one_thread_rest, one_thread_grpc),
                )
                samples, first = _latency(contenders, rounds, calls)
                p50 = {k: _percentile(v, 50) for k, v in samples.items()}
                p99 = {k: _percentile(v, 99) for k, v in samples.items()}
                first = {k: _percentile(v, 50) for k, v in first.items()}
                record["latency"][f"{model}/{batch}"] = {
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "first_call_of_round_p50_ms": first,
                }
                arrays = "in-process from arrays"
                latency_rows.append(
                    [
                        model,
                        batch,
                        f"{p50['in-process']:.3f} / {p99['in-process']:.3f}",
                        f"{p50[arrays]:.3f} / {p99[arrays]:.3f}",
                        f"{p50['REST']:.3f} / {p99['REST']:.3f}",
                        f"+{p50['REST'] - p50['in-process']:.3f} "
                        f"({p50['REST'] / p50['in-process']:.2f}x)",
                        f"{p50['gRPC']:.3f} / {p99['gRPC']:.3f}",
                        f"+{p50['gRPC'] - p50['in-process']:.3f} "
                        f"({p50['gRPC'] / p50['in-process']:.2f}x)",
                        *(
                            f"{p50[f'{api}, {POOLS}']:.3f} / {p99[f'{api}, {POOLS}']:.3f}"
                            f" (+{p50[f'{api}, {POOLS}'] - p50['in-process']:.3f})"
                            for api in ("REST", "gRPC")
                        ),
                        " / ".join(
                            f"{first[name]:.3f}"
                            for name in ("in-process", "REST", "gRPC")
                        ),
                    ]
                )
            if model == "adult":
                for batch in (1, 64):
                    contenders = _ClassifyContenders(
                        loaded[model], batch, plain_rest, plain_grpc, rng
                    )
                    samples, _ = _latency(contenders, rounds, calls)
                    p50 = {k: _percentile(v, 50) for k, v in samples.items()}
                    p99 = {k: _percentile(v, 99) for k, v in samples.items()}
                    record.setdefault("classify", {})[f"adult/{batch}"] = {
                        "p50_ms": p50,
                        "p99_ms": p99,
                    }
                    classify_rows.append(
                        [
                            batch,
                            f"{p50['in-process']:.3f} / {p99['in-process']:.3f}",
                            *(
                                f"{p50[api]:.3f} / {p99[api]:.3f} "
                                f"(+{p50[api] - p50['in-process']:.3f}, "
                                f"{p50[api] / p50['in-process']:.2f}x)"
                                for api in ("REST", "gRPC")
                            ),
                        ]
                    )
            contenders = _Contenders(
                loaded[model], model, 1, plain_rest, plain_grpc, rng
            )
            for clients in (1, 16):
                cases = {
                    "in-process": ("in-process", None),
                    "REST": ("REST", (plain_rest, plain_grpc)),
                    "REST batched": ("REST", (batched_rest, batched_grpc)),
                    "gRPC": ("gRPC", (plain_rest, plain_grpc)),
                    "gRPC batched": ("gRPC", (batched_rest, batched_grpc)),
                }
                rates = {name: [] for name in cases}
                for _ in range(throughput_rounds):
                    for name, (call, ports) in cases.items():
                        rates[name].append(
                            _throughput(contenders, call, clients, seconds, ports or ())
                        )
                rate = {name: statistics.median(v) for name, v in rates.items()}
                record["throughput"][f"{model}/{clients}"] = rate
                throughput_rows.append(
                    [
                        model,
                        clients,
                        f"{rate['in-process']:.0f}",
                        f"{rate['REST']:.0f}",
                        f"{rate['REST batched']:.0f} "
                        f"({rate['REST batched'] / rate['REST']:.2f}x)",
                        f"{rate['gRPC']:.0f}",
                        f"{rate['gRPC batched']:.0f} "
                        f"({rate['gRPC batched'] / rate['gRPC']:.2f}x)",
                    ]
                )
    finally:
        for process in (plain, batched, one_thread):
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        temporary.cleanup()

    record["decode_cpu_ms"] = _decode_cpu(loaded["shapes"], 5 if quick else 20)
    adult_latency = record["latency"]["adult/1"]["p50_ms"]
    rest_gap = adult_latency["REST"] - adult_latency["in-process"]
    sixteen = record["throughput"]["adult/16"]
    batching_gain = sixteen["REST batched"] / sixteen["REST"]
    goals = _goals(record)
    load = os.getloadavg()
    markdown = "\n\n".join(
        [
            f"Latency in ms, p50 / p99 ({rounds} interleaved rounds of {calls} timed "
            f"calls per contender, each after {ROUND_WARMUP} untimed ones; REST and gRPC to an unbatched `keras-mtl serve` "
            "process). in-process: `signature(**tensors)` with the tensors made "
            "beforehand; from arrays: the server's own model call, numpy arrays "
            "turned into tensors (`LoadedModel.run`); TF pools 1/1: the same "
            "calls to a server started with `--tensorflow_intra_op_parallelism=1 "
            "--tensorflow_inter_op_parallelism=1`:",
            harness.markdown_table(
                [
                    "model",
                    "batch",
                    "in-process",
                    "in-process from arrays",
                    "REST",
                    "REST - in-process p50",
                    "gRPC",
                    "gRPC - in-process p50",
                    f"REST, {POOLS} (- in-process p50)",
                    f"gRPC, {POOLS} (- in-process p50)",
                    "first call of a round, p50: in-process / REST / gRPC",
                ],
                latency_rows,
            ),
            "Classify (adult, `classify_income` over serialized `tf.Example`s), "
            "latency in ms, p50 / p99 (same rounds; in-process: the signature "
            "called on the serialized Examples made beforehand; REST `:classify` "
            "and gRPC Classify to the same server, which also builds the "
            "Examples' bytes and the `ClassificationResult`):",
            harness.markdown_table(
                [
                    "batch",
                    "in-process",
                    "REST (- in-process p50, ratio)",
                    "gRPC (- in-process p50, ratio)",
                ],
                classify_rows,
            ),
            f"Throughput in batch-1 requests/s ({seconds:.0f} s per case, median "
            f"of {throughput_rounds}); batched: max_batch_size 128, "
            "batch_timeout_micros 0, 1 batch thread:",
            harness.markdown_table(
                [
                    "model",
                    "clients",
                    "in-process",
                    "REST",
                    "REST batched",
                    "gRPC",
                    "gRPC batched",
                ],
                throughput_rows,
            ),
            "Decoding the shapes batch-64 `:predict` body (1.6 MB, 196,608 "
            "numbers), CPU ms of the decoding thread, median: "
            + ", ".join(
                f"{name} {value:.1f}" for name, value in record["decode_cpu_ms"].items()
            ),
            "Goals:",
            harness.markdown_table(
                ["goal", "measured", "met"],
                [
                    [g["goal"], g["measured"], "met" if g["met"] else "not met"]
                    for g in goals
                ],
            ),  # fmt: skip
            f"Load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}"
            + (" (quick run)" if quick else ""),
        ]
    )
    return {
        "title": "Serving: keras-mtl serve (REST, gRPC, batching) vs in-process",
        "markdown": markdown,
        "rest_minus_in_process_p50_ms": rest_gap,
        "batching_gain_16_clients": batching_gain,
        "goals": goals,
        "load_average": load,
        **record,
    }
