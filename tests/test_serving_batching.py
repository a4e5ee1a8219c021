"""Server-side batching: TF Serving's parameters and semantics."""

import json
import threading
import time

import numpy as np
import pytest

from keras_mtl.saved_model import LoadedModel
from keras_mtl.serving import (
    BatchingParameters,
    Client,
    ModelServer,
    ModelSpec,
    ServedModelConfig,
    ServingError,
    read_batching_parameters_file,
)
from keras_mtl.serving.batching import BatchScheduler
from keras_mtl.serving.metrics import Metrics
from keras_mtl.serving.status import Code

import serving_helpers as helpers


class Recorder:
    """A model call that doubles its input and records the batch sizes."""

    def __init__(self, delay=0.0, gate=None):
        self.sizes, self.delay, self.gate = [], delay, gate

    def __call__(self, inputs):
        if self.gate is not None:
            self.gate.wait(10)
        self.sizes.append(len(inputs["x"]))
        time.sleep(self.delay)
        return {"y": inputs["x"] * 2, "n": np.arange(len(inputs["x"]))}


def run_in_threads(target, count, timeout=30):
    """Runs `target(index)` for each index below `count`, each in a thread
    of its own, all at once; returns once all have ended (or timed out)."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)


def submit_all(scheduler, run, payloads, key="k"):
    results, errors = [None] * len(payloads), []

    def one(index):
        try:
            results[index] = scheduler.run(
                key, run, {"x": payloads[index]}, len(payloads[index])
            )
        except ServingError as error:
            errors.append(error)

    run_in_threads(one, len(payloads))
    return results, errors


def test_concurrent_calls_merge_and_each_caller_gets_its_own_rows():
    scheduler = BatchScheduler(
        BatchingParameters(max_batch_size=8, num_batch_threads=1), Metrics()
    )
    run = Recorder(delay=0.02)
    payloads = [np.full((1 + i % 3, 2), i, np.float32) for i in range(24)]
    try:
        results, errors = submit_all(scheduler, run, payloads)
    finally:
        scheduler.stop()
    assert errors == []
    for payload, result in zip(payloads, results, strict=True):
        np.testing.assert_array_equal(result["y"], payload * 2)
        assert len(result["n"]) == len(payload)
    assert sum(run.sizes) == sum(len(p) for p in payloads)
    assert max(run.sizes) > 1 and max(run.sizes) <= 8  # merged, never above max


def test_a_free_thread_drains_the_queue_without_waiting():
    scheduler = BatchScheduler(
        BatchingParameters(
            max_batch_size=64, batch_timeout_micros=0, num_batch_threads=1
        )
    )
    gate = threading.Event()
    run = Recorder(gate=gate)
    payloads = [np.ones((1, 1), np.float32)] * 6
    threads = [
        threading.Thread(target=scheduler.run, args=("k", run, {"x": p}, 1))
        for p in payloads
    ]
    try:
        threads[0].start()
        time.sleep(0.2)  # the first call holds the only thread
        for thread in threads[1:]:
            thread.start()
        time.sleep(0.2)
        gate.set()
        for thread in threads:
            thread.join(timeout=10)
    finally:
        scheduler.stop()
    assert run.sizes == [1, 5]  # the five queued calls went as one batch
    start = time.perf_counter()
    single = BatchScheduler(BatchingParameters(max_batch_size=64, num_batch_threads=1))
    try:
        single.run("k", Recorder(), {"x": np.ones((1, 1))}, 1)
    finally:
        single.stop()
    assert time.perf_counter() - start < 0.5  # batch_timeout_micros=0: no waiting


def test_an_open_batch_waits_up_to_the_timeout_for_more_calls():
    scheduler = BatchScheduler(
        BatchingParameters(
            max_batch_size=4, batch_timeout_micros=300_000, num_batch_threads=2
        )
    )
    run = Recorder()
    try:
        results, errors = submit_all(scheduler, run, [np.ones((1, 1), np.float32)] * 2)
        full_start = time.perf_counter()
        submit_all(scheduler, run, [np.ones((2, 1), np.float32)] * 2)
        full_seconds = time.perf_counter() - full_start
    finally:
        scheduler.stop()
    assert errors == [] and run.sizes == [2, 4]
    assert full_seconds < 0.25  # a full batch goes at once


def test_a_full_queue_answers_resource_exhausted():
    gate = threading.Event()
    scheduler = BatchScheduler(
        BatchingParameters(
            max_batch_size=1, max_enqueued_batches=1, num_batch_threads=1
        )
    )
    run = Recorder(gate=gate)
    first = threading.Thread(
        target=scheduler.run, args=("k", run, {"x": np.ones((1, 1))}, 1)
    )
    second = threading.Thread(
        target=scheduler.run, args=("k", run, {"x": np.ones((1, 1))}, 1)
    )
    try:
        first.start()
        time.sleep(0.2)  # running, out of the queue
        second.start()
        time.sleep(0.2)  # the one enqueued batch
        with pytest.raises(ServingError) as caught:
            scheduler.run("k", run, {"x": np.ones((1, 1))}, 1)
        assert caught.value.code == Code.UNAVAILABLE
        assert caught.value.http_status == 503
        assert "queue to which this task was submitted is full" in caught.value.message
        with pytest.raises(
            ServingError, match="larger than maximum input batch size 1"
        ):
            scheduler.run("k", run, {"x": np.ones((2, 1))}, 2)
    finally:
        gate.set()
        first.join(10)
        second.join(10)
        scheduler.stop()
    assert run.sizes == [1, 1]


def test_allowed_batch_sizes_pad_and_deadlines_drop_waiting_calls():
    scheduler = BatchScheduler(
        BatchingParameters(
            max_batch_size=8, allowed_batch_sizes=(2, 4, 8), num_batch_threads=1
        )
    )
    run = Recorder()
    try:
        result = scheduler.run("k", run, {"x": np.arange(3.0).reshape(3, 1)}, 3)
        assert run.sizes == [4] and result["y"].ravel().tolist() == [0.0, 2.0, 4.0]
        gate = threading.Event()
        blocked = Recorder(gate=gate)
        holder = threading.Thread(
            target=scheduler.run, args=("k", blocked, {"x": np.ones((1, 1))}, 1)
        )
        holder.start()
        time.sleep(0.2)
        with pytest.raises(ServingError) as caught:
            scheduler.run(
                "k", blocked, {"x": np.ones((1, 1))}, 1, deadline=time.monotonic() + 0.2
            )
        assert caught.value.code == Code.DEADLINE_EXCEEDED
        gate.set()
        holder.join(10)
    finally:
        scheduler.stop()
    assert blocked.sizes == [2]  # the timed-out call was dropped from its batch


def test_submit_gives_a_future_and_a_cancelled_call_is_dropped():
    scheduler = BatchScheduler(
        BatchingParameters(max_batch_size=8, num_batch_threads=1)
    )
    gate = threading.Event()
    run = Recorder(gate=gate)
    try:
        first = scheduler.submit("k", run, {"x": np.ones((1, 1))}, 1)
        time.sleep(0.2)  # the batch thread now holds `first`, waiting on the gate
        dropped = scheduler.submit("k", run, {"x": np.full((2, 1), 5.0)}, 2)
        late = scheduler.submit(
            "k", run, {"x": np.full((1, 1), 7.0)}, 1, deadline=time.monotonic()
        )
        kept = scheduler.submit("k", run, {"x": np.full((3, 1), 3.0)}, 3)
        assert dropped.cancel()
        gate.set()
        assert first.result(10)["y"].ravel().tolist() == [2.0]
        assert kept.result(10)["y"].ravel().tolist() == [6.0, 6.0, 6.0]
        with pytest.raises(ServingError) as caught:
            late.result(10)
        assert caught.value.code == Code.DEADLINE_EXCEEDED
        with pytest.raises(ServingError, match="larger than maximum input batch"):
            scheduler.submit("k", run, {"x": np.ones((9, 1))}, 9)
    finally:
        gate.set()
        scheduler.stop()
    assert dropped.cancelled()
    assert run.sizes == [1, 3]  # neither the cancelled nor the late call ran


def test_batching_parameters_file_and_checks(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text(
        "max_batch_size { value: 32 }\n"
        "batch_timeout_micros { value: 1000 }\n"
        "max_enqueued_batches { value: 100 }\n"
        "num_batch_threads { value: 2 }\n"
        'thread_pool_name { value: "pool" }\n'
        "allowed_batch_sizes: 8\nallowed_batch_sizes: 32\n"
    )
    parameters = read_batching_parameters_file(path)
    assert parameters == BatchingParameters(32, 1000, 100, 2, "pool", (8, 32))
    assert parameters.warmup_batch_sizes() == [1, 8, 32]
    path.write_text("max_batch_size: 32")
    with pytest.raises(ValueError, match="--batching_parameters_file"):
        read_batching_parameters_file(path)
    with pytest.raises(ValueError, match="must be increasing and end with"):
        BatchingParameters(max_batch_size=32, allowed_batch_sizes=(8, 16))
    with pytest.raises(ValueError, match="`num_batch_threads` must be >= 1"):
        BatchingParameters(num_batch_threads=0)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    return helpers.export_tabular(tmp_path_factory.mktemp("saved_models"))


def test_batched_server_answers_each_client_with_its_own_rows(tabular):
    model = LoadedModel(tabular)
    with ModelServer(
        [ServedModelConfig("tabular", str(tabular.parent))],
        rest_api_port=helpers.free_port(),
        grpc_port=0,
        poll_wait_seconds=0,
        batching=BatchingParameters(max_batch_size=16, num_batch_threads=1),
    ) as server:
        real_run = server.registry.resolve(ModelSpec("tabular")).model.run
        sizes = []

        def slow_run(tensors, signature_name="serving_default"):
            sizes.append(len(tensors["age"]))
            time.sleep(0.01)  # lets batches form on a fast machine too
            return real_run(tensors, signature_name)

        server.registry.resolve(ModelSpec("tabular")).model.run = slow_run
        answers, failures = {}, []

        def client_loop(index):
            client = Client(server.rest_url)
            for request in range(5):
                rows = helpers.tabular_rows(1 + index % 2, seed=100 * index + request)
                try:
                    answers[(index, request)] = (rows, client.predict("tabular", rows))
                except ServingError as error:
                    failures.append(error)

        run_in_threads(client_loop, 12, timeout=60)
    assert failures == [] and len(answers) == 60
    assert max(sizes[1:]) > 2  # calls were merged (the first is the warm-up)
    for rows, predictions in answers.values():
        expected = model.predict(helpers.columns(rows, model.input_specs))
        for name in ("income", "marital_status"):
            # A batch of another size may round the last bit differently.
            np.testing.assert_allclose(
                np.array([p[name] for p in predictions], np.float32),
                expected[name],
                rtol=0,
                atol=1e-6,
            )


def test_a_full_queue_is_503_over_rest_and_unavailable_over_grpc(tabular):
    pytest.importorskip("grpc")
    with ModelServer(
        [ServedModelConfig("tabular", str(tabular.parent))],
        rest_api_port=helpers.free_port(),
        grpc_port=helpers.free_port(),
        poll_wait_seconds=0,
        batching=BatchingParameters(
            max_batch_size=1, max_enqueued_batches=1, num_batch_threads=1
        ),
    ) as server:
        model = server.registry.resolve(ModelSpec("tabular")).model
        real_run, gate = model.run, threading.Event()
        model.run = lambda *args: (gate.wait(10), real_run(*args))[1]
        body = json.dumps({"instances": helpers.tabular_rows(1)}).encode()
        statuses = []
        threads = [
            threading.Thread(
                target=lambda: statuses.append(
                    Client(server.rest_url).request(
                        "POST", "/v1/models/tabular:predict", body
                    )[0]
                )
            )
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
            time.sleep(0.3)
        status, answer = Client(server.rest_url).request(
            "POST", "/v1/models/tabular:predict", body
        )
        client = Client(server.rest_url, grpc=server.grpc_target)
        specs = server.registry.resolve(ModelSpec("tabular")).model.input_specs
        with pytest.raises(ServingError) as caught:
            client.grpc_predict(
                "tabular", helpers.columns(helpers.tabular_rows(1), specs)
            )
        client.close()
        gate.set()
        for thread in threads:
            thread.join(timeout=30)
        assert status == 503, answer
        assert (
            "queue to which this task was submitted is full"
            in json.loads(answer)["error"]
        )
        assert caught.value.code == Code.UNAVAILABLE  # the gRPC status
        assert sorted(statuses) == [200, 200]
        assert Client(server.rest_url).predict("tabular", helpers.tabular_rows(1))


def _queued(scheduler):
    """Calls waiting in the scheduler's queues (not yet taken by a thread),
    leaving out those their callers gave up on."""
    with scheduler._condition:
        return sum(
            not (task.future is not None and task.future.cancelled())
            for queue in scheduler._queues.values()
            for batch in queue.batches
            for task in batch.tasks
        )


def _wait_until(condition, seconds=30):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_batched_grpc_server_awaits_batches_and_answers_as_tf_serving(tabular):
    """With batching the gRPC port is a grpc.aio server: Predict awaits its
    batch on the event loop; the other methods run on its thread pool."""
    grpc = pytest.importorskip("grpc")
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    model = LoadedModel(tabular)
    with ModelServer(
        [ServedModelConfig("tabular", str(tabular.parent))],
        rest_api_port=0,
        grpc_port=helpers.free_port(),
        poll_wait_seconds=0,
        batching=BatchingParameters(max_batch_size=16, num_batch_threads=1),
        grpc_max_threads=2,
    ) as server:
        served = server.registry.resolve(ModelSpec("tabular")).model
        real_run, sizes, gate = served.run, [], threading.Event()
        entered = threading.Event()  # the batch thread is in the model call

        def slow_run(tensors, signature_name="serving_default"):
            sizes.append(len(tensors["age"]))
            entered.set()
            gate.wait(10)
            time.sleep(0.01)  # lets batches form on a fast machine too
            return real_run(tensors, signature_name)

        served.run = slow_run
        specs = served.input_specs
        # Waiting calls hold no thread: with 2 threads, 8 calls wait at once
        # and those queued behind the first batch merge into one.
        waiting = [
            threading.Thread(
                target=Client("127.0.0.1:1", grpc=server.grpc_target).grpc_predict,
                args=("tabular", helpers.columns(helpers.tabular_rows(1), specs)),
            )
            for _ in range(8)
        ]
        for thread in waiting:
            thread.start()
        _wait_until(
            lambda: (
                entered.is_set() and sizes[0] + _queued(server.predictor.scheduler) == 8
            )
        )
        gate.set()
        for thread in waiting:
            thread.join(timeout=30)
        assert len(sizes) == 2 and sum(sizes) == 8, sizes
        sizes.clear()
        answers, failures = {}, []

        def client_loop(index):
            client = Client("127.0.0.1:1", grpc=server.grpc_target)
            for request in range(4):
                rows = helpers.tabular_rows(1 + index % 2, seed=100 * index + request)
                try:
                    outputs = client.grpc_predict(
                        "tabular", helpers.columns(rows, specs)
                    )
                    answers[(index, request)] = (rows, outputs)
                except ServingError as error:
                    failures.append(error)
            client.close()

        run_in_threads(client_loop, 8, timeout=60)
        assert failures == [] and len(answers) == 32
        assert max(sizes) > 2  # calls were merged
        for rows, outputs in answers.values():
            expected = model.predict(helpers.columns(rows, model.input_specs))
            for name in ("income", "marital_status"):
                np.testing.assert_allclose(outputs[name], expected[name], atol=1e-6)

        client = Client("127.0.0.1:1", grpc=server.grpc_target)
        wrong = helpers.columns(helpers.tabular_rows(1), specs)
        wrong["age"] = wrong["age"].astype(np.int64)
        for model_name, inputs, code in (
            ("tabular", wrong, Code.INVALID_ARGUMENT),
            (
                "missing",
                helpers.columns(helpers.tabular_rows(1), specs),
                Code.NOT_FOUND,
            ),
        ):
            with pytest.raises(ServingError) as caught:
                client.grpc_predict(model_name, inputs)
            assert caught.value.code == code, caught.value.message
        assert "int64 is provided" in str(
            pytest.raises(ServingError, client.grpc_predict, "tabular", wrong).value
        )
        status = client.grpc_status("tabular")
        assert status.model_version_status[0].state == 30  # AVAILABLE
        channel = grpc.insecure_channel(server.grpc_target)
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service="tabular"))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

        # A call whose deadline passes while it waits is answered
        # DEADLINE_EXCEEDED and left out of the batch formed later.
        gate.clear()
        entered.clear()
        sizes.clear()
        holder = threading.Thread(
            target=client.grpc_predict,
            args=("tabular", helpers.columns(helpers.tabular_rows(1), specs)),
        )
        holder.start()
        assert entered.wait(30)
        short = Client("127.0.0.1:1", grpc=server.grpc_target, timeout=0.3)
        with pytest.raises(ServingError) as caught:
            short.grpc_predict(
                "tabular", helpers.columns(helpers.tabular_rows(2), specs)
            )
        assert caught.value.code == Code.DEADLINE_EXCEEDED
        _wait_until(lambda: _queued(server.predictor.scheduler) == 0)
        gate.set()
        holder.join(30)
        assert sizes == [1]  # only the holder's row ran
        short.close()
        client.close()
        channel.close()
