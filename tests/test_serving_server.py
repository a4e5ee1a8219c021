"""`keras-mtl serve` as a process, metrics, and what serving depends on."""

import ast
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from keras_mtl import cli
from keras_mtl.saved_model import LoadedModel
from keras_mtl.serving import Client, ModelServer, MonitoringConfig, ServedModelConfig
from keras_mtl.serving import server as server_lib

import serving_helpers as helpers

SERVING = Path(__file__).resolve().parent.parent / "keras_mtl" / "serving"
KERAS_MTL = Path(sys.executable).parent / "keras-mtl"


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    return helpers.export_tabular(tmp_path_factory.mktemp("saved_models"))


def wait_until_serving(client, process, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"the server exited: {process.communicate()[1][-3000:]}"
            )
        try:
            return client.status("tabular")
        except OSError:
            client.close()
            time.sleep(0.25)
    raise AssertionError("the server did not answer in time")


def test_keras_mtl_serve_runs_and_stops_cleanly_on_sigterm(tabular, tmp_path):
    batching = tmp_path / "batching.config"
    batching.write_text("max_batch_size { value: 8 }\nnum_batch_threads { value: 1 }\n")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }\n")
    rest, grpc_port = helpers.free_port(), helpers.free_port()
    process = subprocess.Popen(
        [
            str(KERAS_MTL),
            "serve",
            "--model_name=tabular",
            f"--model_base_path={tabular.parent}",
            f"--rest_api_port={rest}",
            "--port",
            str(grpc_port),
            "--enable_batching=true",
            f"--batching_parameters_file={batching}",
            f"--monitoring_config_file={monitoring}",
            "--file_system_poll_wait_seconds=0.5",
            "--tensorflow_intra_op_parallelism=1",
            "--tensorflow_inter_op_parallelism=1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        client = Client(f"127.0.0.1:{rest}", grpc=f"127.0.0.1:{grpc_port}")
        status = wait_until_serving(client, process)
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        rows = helpers.tabular_rows(2)
        rest_answer = client.predict("tabular", instances=rows)
        model = LoadedModel(tabular)
        grpc_answer = client.grpc_predict(
            "tabular", helpers.columns(rows, model.input_specs)
        )
        np.testing.assert_array_equal(
            grpc_answer["income"], np.array([r["income"] for r in rest_answer], "f4")
        )
        status, page = client.request("GET", "/monitoring/prometheus/metrics")
        page = page.decode()
        assert status == 200
        # REST and gRPC predictions, not the status polls
        assert (
            ':tensorflow:serving:request_count{model_name="tabular",status="OK"} 2'
            in page
        )
        assert (
            ':tensorflow:serving:request_latency_bucket{model_name="tabular",'
            'API="predict",entrypoint="REST",le="10"}' in page
        )
        assert 'entrypoint="GRPC"' in page
        assert ":tensorflow:serving:batching_session:processed_batch_size_count" in page
        client.close()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr[-3000:]
    assert "Loaded servable version {name: tabular version: 1}" in stderr
    # read back from TensorFlow after the flags set them
    assert "TensorFlow thread pools: intra-op 1, inter-op 1" in stderr
    assert f"Exporting HTTP/REST API at:127.0.0.1:{rest} ..." in stderr
    assert "Large numeric JSON arrays are read by the compiled scanner" in stderr
    assert f"Running gRPC ModelServer at 127.0.0.1:{grpc_port} ..." in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["serve", "--model_name=x"], "Pass --model_base_path"),
        (
            ["serve", "--model_base_path=/nonexistent"],
            "--model_base_path must be a directory",
        ),
        (
            ["serve", "--model_config_file=/nonexistent.config"],
            "--model_config_file: no such file",
        ),
        (["serve", "--model_base_path=.", "--enable_batching=maybe"], "expected true"),
        (
            ["serve", "--model_base_path=.", "--tensorflow_inter_op_parallelism=-1"],
            "expected 0 (TensorFlow picks) or a number of threads, received '-1'",
        ),
        (
            ["serve", "--model_base_path=.", "--tensorflow_intra_op_parallelism=two"],
            "received 'two'",
        ),
    ],
)
def test_bad_serve_arguments_get_one_line_and_status_2(args, fragment, capsys):
    try:
        status = cli.main(args)
    except SystemExit as exit:
        status = exit.code
    stderr = capsys.readouterr().err
    assert status == 2
    assert fragment in stderr and "Traceback" not in stderr


def test_prometheus_metrics_count_requests_by_status(tabular):
    with ModelServer(
        [ServedModelConfig("tabular", str(tabular.parent))],
        rest_api_port=helpers.free_port(),
        grpc_port=0,
        poll_wait_seconds=0,
        monitoring=MonitoringConfig(True, "/metrics"),
    ) as server:
        client = Client(server.rest_url)
        client.predict("tabular", instances=helpers.tabular_rows(1))
        client.request("POST", "/v1/models/tabular/versions/9:predict", b"{}")
        client.request("POST", "/v1/models/tabular:predict", b"")
        status, page = client.request("GET", "/metrics")
        assert status == 200
        lines = page.decode().splitlines()
        assert "# TYPE :tensorflow:serving:request_count counter" in lines
        for code, count in (("OK", 1), ("NOT_FOUND", 1), ("INVALID_ARGUMENT", 1)):
            assert (
                f':tensorflow:serving:request_count{{model_name="tabular",'
                f'status="{code}"}} {count}'
            ) in lines
        assert any(
            line.startswith(":tensorflow:cc:saved_model:load_attempt_count{")
            and 'status="success"} 1' in line
            for line in lines
        )
        assert client.request("POST", "/metrics", b"")[0] == 405
        assert gc.get_freeze_count() > 0  # the loaded model is out of gc's sight
    assert gc.get_freeze_count() == 0


def test_rest_serves_without_the_tensorflow_serving_api_package(
    tabular, monkeypatch, caplog
):
    for name in list(sys.modules):
        if name.startswith("tensorflow_serving"):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "tensorflow_serving", None)
    monkeypatch.setitem(
        sys.modules, "tensorflow_serving.apis.prediction_service_pb2_grpc", None
    )
    assert not server_lib.grpc_available()
    with caplog.at_level(logging.WARNING, logger="keras_mtl.serving"):
        with ModelServer(
            [ServedModelConfig("tabular", str(tabular.parent))],
            rest_api_port=helpers.free_port(),
            grpc_port=helpers.free_port(),
            poll_wait_seconds=0,
        ) as server:
            answer = Client(server.rest_url).predict(
                "tabular", instances=helpers.tabular_rows(1)
            )
            assert server.grpc_target is None
    assert len(answer) == 1
    assert "pip install" in caplog.text and "gRPC is off" in caplog.text


FORBIDDEN = (
    "keras_mtl.training",
    "keras_mtl.models",
    "keras_mtl.data",
    "keras_mtl.tuning",
    "keras_mtl.export",
    "keras_mtl.evaluation",
    "keras_mtl.distribute",
    "tensorflow_datasets",
    "keras",
)


def test_serving_never_imports_training_model_building_or_tfds():
    for path in sorted(SERVING.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not any(
                    name == bad or name.startswith(bad + ".") for bad in FORBIDDEN
                ), f"{path.name} imports {name}"
                if name.startswith("tensorflow_serving") and node.col_offset == 0:
                    assert path.name == "grpc_server.py", (
                        f"{path.name} imports {name} at module level; REST must "
                        "work without tensorflow-serving-api"
                    )


def test_keras_mtl_predict_uses_the_same_json_codec(tabular, tmp_path, capsys):
    rows = helpers.tabular_rows(2)
    columns = tmp_path / "columns.json"
    columns.write_text(
        json.dumps({"inputs": {name: [r[name] for r in rows] for name in rows[0]}})
    )
    plain = tmp_path / "rows.json"
    plain.write_text(json.dumps(rows))
    outputs = []
    for source in (columns, plain):
        assert (
            cli.main(["predict", "--model", str(tabular), "--input", str(source)]) == 0
        )
        outputs.append(json.loads(capsys.readouterr().out))
    with ModelServer(
        [ServedModelConfig("tabular", str(tabular.parent))],
        rest_api_port=helpers.free_port(),
        grpc_port=0,
        poll_wait_seconds=0,
    ) as server:
        client = Client(server.rest_url)
        assert outputs[0] == {
            "outputs": client.predict(
                "tabular", inputs=json.loads(columns.read_text())["inputs"]
            )
        }
        assert outputs[1] == {"predictions": client.predict("tabular", instances=rows)}


def test_stopping_finishes_rest_and_grpc_requests_in_flight(tabular):
    import threading

    pytest.importorskip("tensorflow_serving")
    server = ModelServer(
        [ServedModelConfig("tabular", str(tabular.parent))],
        rest_api_port=helpers.free_port(),
        grpc_port=helpers.free_port(),
        poll_wait_seconds=0,
        drain_timeout_seconds=5,
    ).start()
    predict = server.predictor.predict

    def slow_predict(*args, **kwargs):
        time.sleep(0.6)  # still running when the stop comes
        return predict(*args, **kwargs)

    server.predictor.predict = slow_predict
    rows = helpers.tabular_rows(2)
    loaded = LoadedModel(tabular)
    answers = {}
    clients = Client(server.rest_url, grpc=server.grpc_target)
    clients.grpc_predict("tabular", helpers.columns(rows, loaded.input_specs))
    calls = {
        "rest": lambda: clients.predict("tabular", instances=rows),
        "grpc": lambda: clients.grpc_predict(
            "tabular", helpers.columns(rows, loaded.input_specs)
        ),
    }
    threads = [
        threading.Thread(target=lambda k=k: answers.update({k: calls[k]()}))
        for k in calls
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.25)
    start = time.perf_counter()
    server.stop()
    assert time.perf_counter() - start < 4
    for thread in threads:
        thread.join(timeout=10)
    assert len(answers["rest"]) == 2 and answers["grpc"]["income"].shape == (2, 1)
    clients.close()


def test_thread_pools_are_refused_once_tensorflow_runs_and_when_negative():
    import tensorflow as tf

    tf.constant(1.0) + 1.0  # TensorFlow has made its pools now
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    # asking for the sizes it has is fine, and says what they are
    assert server_lib.set_thread_pools(intra, inter) == (intra, inter)
    with pytest.raises(RuntimeError, match="before any model is loaded"):
        server_lib.set_thread_pools(intra, inter + 3)
    with pytest.raises(ValueError, match="--tensorflow_intra_op_parallelism must be"):
        server_lib.set_thread_pools(-2, inter)
