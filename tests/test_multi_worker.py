"""Multi-worker training: `TF_CONFIG`, the shared backup, the Keras workaround,
and real clusters of `keras-mtl` processes on 127.0.0.1 started by the
launcher (a 2-worker run against one process, a killed worker, a hung one)."""

import io
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import cli
from keras_mtl.compat import keras_multi_worker
from keras_mtl.multi_worker import (
    EXAMPLE_TF_CONFIG,
    MultiWorkerBackupAndRestore,
    chief_or_scratch_dir,
    is_chief,
    parse_tf_config,
)
from keras_mtl.multi_worker import backup as backup_module
from keras_mtl.multi_worker.launcher import (
    ClusterError,
    LocalCluster,
    free_ports,
    local_tf_config,
    worker_command,
)

from conftest import InterruptAtEpoch, tiny_overrides

HERE = Path(__file__).resolve().parent
KERAS_MTL = str(Path(sys.executable).parent / "keras-mtl")
# Unshuffled, 64 validation examples: one even batch for 1 and 2 replicas.
UNSHUFFLED = ["train.shuffle=false", "data.validation_fraction=0.125"]


def sets(overrides):
    return [arg for override in overrides for arg in ("--set", override)]


def worker_env(tmp_path):
    """The environment of a launcher whose temporary files the test can see."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TMPDIR": str(scratch)}


def process_groups_alive(pgids):
    """The processes, if any, that still belong to one of the groups `pgids`."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (None, "the TF_CONFIG environment variable is not set"),
        ("{not json", "TF_CONFIG is not valid JSON"),
        ('{"cluster": {"worker": ["a:1"]}}', "must have a 'cluster' object and a"),
        (
            '{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": '
            '{"type": "worker", "index": 0}}',
            "ParameterServerStrategy; Keras 3 model.fit does not support it",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:2"]}, "task": '
            '{"type": "worker", "index": 2}}',
            r"task.index=2 is outside cluster.worker \(indices 0..1\)",
        ),
        (
            '{"cluster": {"worker": ["localhost"]}, "task": '
            '{"type": "worker", "index": 0}}',
            "cluster address 'localhost' is not host:port",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator"}}',
            "task.type must be one of",
        ),
    ],
)
def test_a_bad_tf_config_is_refused_with_an_example(raw, fragment):
    with pytest.raises(ValueError, match=fragment) as error:
        parse_tf_config(raw)
    message = str(error.value)
    assert EXAMPLE_TF_CONFIG in message and "--workers N" in message
    assert message.endswith(f"Received: TF_CONFIG={raw!r}")


def test_a_cluster_with_a_chief_counts_it_as_worker_zero():
    raw = (
        '{"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:2"]}, '
        '"task": {"type": "worker", "index": 0}}'
    )
    cluster = parse_tf_config(raw)
    assert (cluster.num_workers, cluster.worker_index, cluster.is_chief) == (
        3,
        1,
        False,
    )
    chief = parse_tf_config(raw.replace('"worker", "index": 0', '"chief"'))
    assert chief.is_chief and chief.worker_index == 0


def test_multi_worker_without_tf_config_fails_before_starting(
    tiny_config, monkeypatch, capsys
):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = tiny_config.replace(["train.strategy=multi_worker"])
    with pytest.raises(ValueError, match="TF_CONFIG environment variable is not set"):
        keras_mtl.make_strategy(config.train)
    code = cli.main(["train", "--set", "train.strategy=multi_worker"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("keras-mtl train: error: train.strategy='multi_worker'")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--max-restarts", "1"], "--max-restarts restarts a local cluster"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--workers", "3"], "train.batch_size=128 must be divisible by --workers=3"),
        (["--workers", "2", "--max-restarts", "-1"], "--max-restarts must be >= 0"),
    ],
)
def test_bad_launcher_options_are_refused(args, fragment, capsys):
    assert cli.main(["train", *args]) == 2
    assert fragment in capsys.readouterr().err


def test_every_split_is_sharded_by_data_across_workers(tiny_config):
    datasets = keras_mtl.load_datasets(tiny_config)
    policy = tf.data.experimental.AutoShardPolicy.DATA
    for dataset in (datasets.train, datasets.validation, datasets.test):
        assert dataset.options().experimental_distribute.auto_shard_policy == policy


def test_the_workaround_is_guarded_by_the_keras_version():
    assert keras_multi_worker.needed((3, 15, 1))
    assert not keras_multi_worker.needed((3, 16, 0))
    assert not keras_multi_worker.needed((3, 14, 9))
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    try:
        assert keras_multi_worker.install() and keras_multi_worker.install()
        assert trainer.reduce_per_replica.keras_mtl_original is original
    finally:
        keras_multi_worker.uninstall()
    assert trainer.reduce_per_replica is original


def test_a_backup_is_one_weights_file_named_by_its_state(tiny_config):
    config = tiny_config.replace(["train.epochs=3"])
    with pytest.raises(KeyboardInterrupt):
        keras_mtl.train(config, callbacks=[InterruptAtEpoch(2)], verbose=0)
    backup = keras_mtl.training.run_dir_for(config) / "backup"
    state = json.loads((backup / "training_metadata.json").read_text())
    assert state == {"epoch": 2, "batch": 0, "weights": "epoch-2.weights.h5"}
    assert sorted(path.name for path in backup.iterdir()) == [
        "epoch-2.weights.h5",
        "training_metadata.json",
    ]


def _strategy_of(task_id, workers=2):
    """A stand-in for a MultiWorkerMirroredStrategy: what `cluster_of` reads."""
    spec = tf.train.ClusterSpec({"worker": [f"h{i}:1" for i in range(workers)]})
    resolver = types.SimpleNamespace(
        task_type="worker", task_id=task_id, cluster_spec=lambda: spec
    )
    return types.SimpleNamespace(cluster_resolver=resolver)


def test_only_the_chief_keeps_what_it_writes(tmp_path):
    with chief_or_scratch_dir(tmp_path / "run", _strategy_of(0)) as path:
        assert path == tmp_path / "run"
    with chief_or_scratch_dir(tmp_path / "run", _strategy_of(1)) as path:
        assert path != tmp_path / "run" and path.is_dir()
        (path / "history.csv").write_text("epoch\n")
    assert not path.exists()
    assert is_chief(tf.distribute.get_strategy())


class WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = self.model.get_weights()


def test_only_the_chief_writes_the_backup_and_every_worker_restores_it(
    tmp_path, monkeypatch
):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile("sgd", "mse")
    x, y = np.ones((8, 2), "float32"), np.zeros((8, 1), "float32")
    backup_dir = tmp_path / "backup"
    backup = MultiWorkerBackupAndRestore(str(backup_dir), delete_checkpoint=False)

    def fit(chief, epochs):
        monkeypatch.setattr(backup_module, "is_chief", lambda strategy: chief)
        start = WeightsAtStart()
        history = model.fit(x, y, epochs=epochs, callbacks=[backup, start], verbose=0)
        return history, start.weights

    fit(chief=False, epochs=2)
    assert not backup_dir.exists()
    fit(chief=True, epochs=2)
    chief_weights = model.get_weights()
    model.set_weights([np.zeros_like(weight) for weight in chief_weights])
    history, restored = fit(chief=False, epochs=3)
    assert backup.restored_epoch == 2 and history.epoch == [2]
    for got, expected in zip(restored, chief_weights, strict=True):
        np.testing.assert_array_equal(got, expected)
    state = json.loads((backup_dir / "training_metadata.json").read_text())
    assert state["epoch"] == 2  # The worker did not write its epoch 3.


@pytest.mark.slow
def test_two_workers_train_as_one_process(tiny_config, shapes_data_dir, tmp_path):
    """Same unshuffled batches: 2 workers log the losses of 1 process."""
    overrides = tiny_overrides(tmp_path, shapes_data_dir) + UNSHUFFLED
    overrides += ["train.epochs=2"]
    result = subprocess.run(
        [KERAS_MTL, "train", "--workers", "2", "--verbose", "2", *sets(overrides)],
        capture_output=True,
        text=True,
        env=worker_env(tmp_path),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    export = Path(result.stdout.strip().splitlines()[-1])
    assert export == tmp_path / "saved_models" / "shapes" / "1" and export.is_dir()
    assert "[worker 1] Epoch 2/2" in result.stderr
    run_dir = tmp_path / "runs" / "shapes"
    (attempt,) = json.loads((run_dir / "launch.json").read_text())["attempts"]
    digests = [report["weights_sha256"] for report in attempt["reports"]]
    assert attempt["outcome"] == "finished" and len(set(digests)) == 1
    assert digests[0] and attempt["reports"][1]["export"] is None
    assert list((tmp_path / "tmp").iterdir()) == []  # Worker scratch removed.

    single = tiny_config.replace(
        UNSHUFFLED + ["train.epochs=2", f"train.run_dir={tmp_path / 'single'}"]
    )
    _, history, _ = keras_mtl.train(single, verbose=0)
    workers = json.loads((run_dir / "history.json").read_text())
    for key in ("loss", "coarse_loss", "fine_loss", "val_coarse_loss", "val_fine_loss"):
        np.testing.assert_allclose(
            workers[key], history.history[key], rtol=1e-4, err_msg=key
        )


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _backup_epoch(backup):
    try:
        return json.loads((backup / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_a_killed_worker_restarts_the_cluster_from_the_last_epoch(
    shapes_data_dir, tmp_path
):
    overrides = tiny_overrides(tmp_path, shapes_data_dir)
    overrides += ["train.epochs=3", "train.batch_size=16"]  # 28 steps an epoch
    overrides += ["train.backup_every_seconds=0"]  # a backup after every epoch
    log = tmp_path / "launcher.log"
    command = [KERAS_MTL, "train", "--workers", "2", "--max-restarts", "1"]
    with open(log, "w") as stderr:
        launcher = subprocess.Popen(
            [*command, *sets(overrides)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=worker_env(tmp_path),
        )
    try:
        run_dir = tmp_path / "runs" / "shapes"
        _wait_for(lambda: _backup_epoch(run_dir / "backup") >= 1, 180, "epoch 1")
        time.sleep(0.5)  # into the next epoch
        pids = json.loads(log.read_text().split("pids ", 1)[1].split("\n", 1)[0])
        os.kill(pids[1], signal.SIGKILL)
        stdout, _ = launcher.communicate(timeout=240)
    finally:
        launcher.kill()
        launcher.wait()
    stderr = log.read_text()
    assert launcher.returncode == 0, stderr[-3000:]
    summary = json.loads((run_dir / "launch.json").read_text())
    first, second = summary["attempts"]
    assert summary["restarts"] == 1 and first["pids"] == pids
    assert first["reason"] == "worker 1 exited with SIGKILL"
    resumed = int(stderr.split("resuming after ")[1].split()[0])
    assert 1 <= resumed < 3
    for index, report in enumerate(second["reports"]):
        assert report["epochs"] == list(range(resumed, 3)), index
    assert f"[worker 1] Resuming after epoch {resumed}" in stderr
    digests = {report["weights_sha256"] for report in second["reports"]}
    assert len(digests) == 1 and None not in digests
    rows = (run_dir / "history.csv").read_text().strip().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["0", "1", "2"]
    assert not (run_dir / "backup").exists()
    assert sorted(p.name for p in (tmp_path / "saved_models" / "shapes").iterdir()) == [
        "1"
    ]
    assert stdout.strip().splitlines()[-1] == str(tmp_path / "saved_models/shapes/1")
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.slow
def test_a_hung_worker_is_killed_with_everything_it_started(shapes_data_dir, tmp_path):
    """Worker 1 never joins and ignores SIGTERM; worker 0 waits for it forever."""
    overrides = tiny_overrides(tmp_path, shapes_data_dir)
    real = worker_command([*sets(overrides), "--set", "train.strategy=multi_worker"])
    hung = [
        sys.executable,
        "-c",
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "time.sleep(600)\n",
    ]
    (tmp_path / "runs").mkdir()
    log = io.StringIO()
    cluster = LocalCluster(
        [],
        2,
        tmp_path / "runs",
        startup_timeout=10,
        stop_grace=2,
        log=log,
        command=lambda index: real if index == 0 else hung,
    )
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"worker\(s\) \[0, 1\] did not join"):
        cluster.run()
    assert time.monotonic() - started < 10 + 2 + 20
    (attempt,) = cluster.attempts
    assert attempt["exit_codes"][1] == -signal.SIGKILL  # SIGTERM was ignored.
    assert "[launcher] stopped worker(s) [" in log.getvalue()
    assert process_groups_alive(set(attempt["pids"])) == []


@pytest.mark.slow
def test_keras_still_fails_under_multi_worker_without_the_workaround(tmp_path):
    """Tells us when `keras_mtl.compat.keras_multi_worker` can go (keras #20585).

    When `plain` stops failing, Keras' symbolic build works under
    MultiWorkerMirroredStrategy; when `first_replica_build` stops failing,
    Keras reduces scalar logs itself: delete the workaround module.
    """
    ports = free_ports(2)
    processes = [
        subprocess.Popen(
            [sys.executable, str(HERE / "multi_worker_keras_check.py")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "TF_CONFIG": local_tf_config(ports, index)},
        )
        for index in range(2)
    ]
    try:
        outputs = [process.communicate(timeout=180)[0] for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    results = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    for result in results:
        assert "PerReplica" in result["plain"], result
        assert "Invalid reduction dimension 0" in result["first_replica_build"], result
        assert result["workaround"] == "ok", result
