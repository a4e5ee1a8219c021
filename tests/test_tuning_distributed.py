"""Keras Tuner's distributed mode: a chief oracle and two workers on 127.0.0.1."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras_mtl

from conftest import tiny_overrides

KERAS_MTL = str(Path(sys.executable).parent / "keras-mtl")
DEADLINE_S = 300


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_chief_and_two_workers_finish_a_bounded_search(tmp_path, shapes_data_dir):
    overrides = [*tiny_overrides(tmp_path, shapes_data_dir), "tuning.max_trials=3"]
    command = [
        KERAS_MTL,
        "tune",
        "--preset",
        "shapes",
        *(arg for override in overrides for arg in ("--set", override)),
        "--objective",
        "val_fine_accuracy",
        "--verbose",
        "2",
    ]
    environment = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "KERASTUNER_ORACLE_IP": "127.0.0.1",
        "KERASTUNER_ORACLE_PORT": str(free_port()),
    }
    processes = {}
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            with (
                open(tmp_path / f"{tuner_id}.out", "w") as out,
                open(tmp_path / f"{tuner_id}.err", "w") as err,
            ):
                processes[tuner_id] = subprocess.Popen(
                    command,
                    env={**environment, "KERASTUNER_TUNER_ID": tuner_id},
                    stdout=out,
                    stderr=err,
                    cwd=tmp_path,
                    start_new_session=True,  # its own process group, killed below
                )
        deadline = time.monotonic() + DEADLINE_S
        for tuner_id, process in processes.items():
            status = process.wait(timeout=max(deadline - time.monotonic(), 1))
            errors = (tmp_path / f"{tuner_id}.err").read_text()[-3000:]
            assert status == 0, f"{tuner_id} exited with {status}:\n{errors}"
    finally:
        for process in processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    config = keras_mtl.load_config("shapes", overrides)
    project = keras_mtl.tuning.project_dir_for(config)
    with open(project / "results.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 3 and {row["status"] for row in rows} == {"COMPLETED"}
    assert all(row["objective"] == row["val_fine_accuracy"] for row in rows)
    # The chief's oracle proposed the reference first; the workers reported
    # each execution's objective through it.
    assert [row["reference"] for row in rows] == ["True", "False", "False"]
    assert all(len(json.loads(row["objective_runs"])) == 2 for row in rows)
    # Each worker saved its state after finishing at least one trial.
    assert (project / "tuner0.json").exists() and (project / "tuner1.json").exists()
    for worker in ("tuner0", "tuner1"):
        assert "worker finished" in (tmp_path / f"{worker}.err").read_text()
        assert (tmp_path / f"{worker}.out").read_text().count("val_fine_accuracy") >= 1
    exported = Path((tmp_path / "chief.out").read_text().strip().splitlines()[-1])
    assert exported == tmp_path / "saved_models" / "shapes" / "1"
    assert keras_mtl.read_metadata(exported)["config"]["tuning"]["max_trials"] == 3
