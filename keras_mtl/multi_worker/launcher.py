"""`keras-mtl train --workers N`: a `MultiWorkerMirroredStrategy` cluster of
local processes.

The launcher starts N copies of `keras-mtl train` with
`train.strategy=multi_worker`, each with a `TF_CONFIG` naming N free ports on
127.0.0.1 and its own index (worker 0 is the chief), streams their output
with a `[worker i]` prefix, and returns the chief's export. It is how the
multi-worker path runs on one machine, and how the tests run it.

What it guards against (with TensorFlow 2.21):

- A worker whose peers never start blocks forever, and a hung process may
  ignore SIGTERM: every worker must join the cluster within `startup_timeout`
  seconds, and every stop is SIGTERM to the worker's process group, then
  SIGKILL after `stop_grace` seconds. Workers also die with the launcher
  (Linux), and Ctrl-C or SIGTERM to the launcher stops them all.
- A surviving worker may notice a dead peer only after ~10 s and then exits:
  the launcher stops the cluster as soon as any worker fails and, while
  `max_restarts` allows, starts it again on fresh ports. Every worker then
  restores the chief's backup and training resumes after the last finished
  epoch.
- Workers that drift apart: each reports a digest of its final weights, and
  the launcher fails unless they agree.

`<run_dir>/launch.json` records every attempt: ports, pids, exit codes, the
workers' reports.
"""

import dataclasses
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from keras_mtl.multi_worker import report as worker_report
from keras_mtl.multi_worker.backup import backup_epoch
from keras_mtl.multi_worker.worker_process import (
    WorkerProcess,
    describe_exit,
    stop_workers,
)

_POLL_SECONDS = 0.1
_READY = ("ready", "finished")


class ClusterError(RuntimeError):
    """The cluster failed, and the launcher stopped every worker."""


@dataclasses.dataclass
class LaunchResult:
    """What a finished local cluster produced.

    Attributes:
        export_path: The chief's SavedModel version directory (None with
            `--no-export`).
        restarts: How many times the cluster was restarted.
        attempts: One record per start of the cluster (also in `launch.json`).
        weights_sha256: The digest every worker's final weights share.
    """

    export_path: str | None
    restarts: int
    attempts: list
    weights_sha256: str | None


def free_ports(count):
    """`count` distinct TCP ports that are free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def local_tf_config(ports, index):
    """The `TF_CONFIG` of worker `index` in a cluster on 127.0.0.1 `ports`."""
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def worker_command(train_args):
    """The command of one worker: `keras-mtl train` with `train_args`."""
    return [sys.executable, "-m", "keras_mtl.cli", "train", *train_args]


def _worker_env(ports, index, report_path, attempt_dir):
    """The environment of worker `index`: its `TF_CONFIG`, report file and
    scratch directory, and the launcher's pid to die with."""
    # A killed worker cannot remove its scratch directories; they go under
    # the attempt's directory, which the launcher removes.
    scratch = attempt_dir / f"worker-{index}-tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        "TF_CONFIG": local_tf_config(ports, index),
        "TMPDIR": str(scratch),
        worker_report.REPORT_ENV: str(report_path),
        worker_report.LAUNCHER_PID_ENV: str(os.getpid()),
        "PYTHONUNBUFFERED": "1",
    }
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


class _Interrupted(KeyboardInterrupt):
    pass


def _raise_interrupted(signum, frame):
    raise _Interrupted(f"the launcher received {signal.Signals(signum).name}")


class LocalCluster:
    """Runs N workers on this machine until they finish, restarting on failure.

    Args:
        train_args: Arguments of `keras-mtl train` for every worker (they
            must select `train.strategy=multi_worker`).
        workers: How many workers.
        run_dir: The run directory of the config (`launch.json` goes there).
        max_restarts: How often a failed cluster is started again.
        startup_timeout: Seconds for every worker to join the cluster.
        timeout: Seconds for the whole job (None: no limit).
        stop_grace: Seconds between SIGTERM and SIGKILL.
        log: Where the workers' prefixed output goes (default stderr).
        command: `index -> argv` of worker `index` (default: `keras-mtl
            train` with `train_args`).

    Example:

    ```python
    cluster = LocalCluster(["--preset", "shapes", "--set", "train.strategy=multi_worker"],
                           workers=2, run_dir=Path("runs/shapes"))
    result = cluster.run()
    ```
    """

    def __init__(
        self,
        train_args,
        workers,
        run_dir,
        *,
        max_restarts=0,
        startup_timeout=300.0,
        timeout=None,
        stop_grace=5.0,
        log=None,
        command=None,
    ):
        if workers < 1:
            raise ValueError(f"--workers must be at least 1. Received: {workers}")
        self.workers, self.run_dir = workers, Path(run_dir)
        self.max_restarts, self.startup_timeout = max_restarts, startup_timeout
        self.timeout, self.stop_grace = timeout, stop_grace
        self.log = log or sys.stderr
        self.command = command or (lambda index: worker_command(train_args))
        self.attempts = []
        self._lock = threading.Lock()

    def say(self, message):
        with self._lock:
            self.log.write(f"[launcher] {message}\n")
            self.log.flush()

    def run(self):
        """Starts the cluster and waits for it; returns a `LaunchResult`.

        Raises:
            ClusterError: Every start failed, the job timed out or the workers
                ended with different weights; no worker is left running.
            KeyboardInterrupt: Ctrl-C or SIGTERM; every worker was stopped.
        """
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        in_main = threading.current_thread() is threading.main_thread()
        previous = (
            signal.signal(signal.SIGTERM, _raise_interrupted) if in_main else None
        )
        try:
            while True:
                attempt = self._attempt(deadline)
                if attempt["outcome"] == "finished":
                    return self._result(attempt)
                if attempt["outcome"] == "timeout":
                    raise ClusterError(attempt["reason"])
                restarts = len(self.attempts) - 1
                if restarts >= self.max_restarts:
                    raise ClusterError(
                        f"{attempt['reason']}; gave up after {restarts} restart(s) "
                        f"(--max-restarts {self.max_restarts}).\n"
                        + attempt.get("tail", "")
                    )
                epochs = backup_epoch(self.run_dir / "backup")
                self.say(
                    f"{attempt['reason']}; restarting the cluster (restart "
                    f"{restarts + 1} of {self.max_restarts}), resuming after "
                    f"{epochs} finished epoch(s)"
                )
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)
            self._write_summary()

    def _attempt(self, deadline):
        ports = free_ports(self.workers)
        reports_dir = Path(tempfile.mkdtemp(prefix="keras-mtl-launch-"))
        attempt = {"ports": ports, "pids": [], "outcome": None}
        self.attempts.append(attempt)
        workers, paths = [], []
        try:
            for index in range(self.workers):
                paths.append(reports_dir / f"worker-{index}.json")
                env = _worker_env(ports, index, paths[-1], reports_dir)
                workers.append(
                    WorkerProcess(index, self.command(index), env, self.log, self._lock)
                )
                attempt["pids"].append(workers[-1].process.pid)
            self.say(
                f"attempt {len(self.attempts)}: {self.workers} worker(s) on "
                f"127.0.0.1 ports {ports}, pids {attempt['pids']}"
            )
            self._watch(workers, paths, attempt, deadline)
        finally:
            left = stop_workers(workers, self.stop_grace)
            if left:
                self.say(f"stopped worker(s) {left}")
            for worker in workers:
                worker.close()
            attempt["exit_codes"] = [worker.poll() for worker in workers]
            attempt["reports"] = [worker_report.read_report(path) for path in paths]
            shutil.rmtree(reports_dir, ignore_errors=True)
        return attempt

    def _watch(self, workers, paths, attempt, deadline):
        started = time.monotonic()
        chief_done_at = None
        while True:
            codes = [worker.poll() for worker in workers]
            failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                worker = workers[failed[0]]
                attempt["outcome"] = "failed"
                attempt["reason"] = (
                    f"worker {failed[0]} exited with {describe_exit(codes[failed[0]])}"
                )
                attempt["tail"] = "\n".join(worker.tail)
                return
            if all(code == 0 for code in codes):
                attempt["outcome"] = "finished"
                return
            now = time.monotonic()
            if codes[0] == 0:
                chief_done_at = chief_done_at or now
                if now - chief_done_at > max(self.stop_grace, 30.0):
                    self.say("the chief finished; stopping the workers still running")
                    attempt["outcome"] = "finished"
                    return
            ready = [
                worker_report.read_report(path).get("stage") in _READY for path in paths
            ]
            if not all(ready) and now - started > self.startup_timeout:
                waiting = [i for i, flag in enumerate(ready) if not flag]
                attempt["outcome"] = "failed"
                attempt["reason"] = (
                    f"worker(s) {waiting} did not join the cluster within "
                    f"{self.startup_timeout:g} s (--startup-timeout)"
                )
                return
            if deadline is not None and now > deadline:
                attempt["outcome"] = "timeout"
                attempt["reason"] = (
                    f"the cluster did not finish within {self.timeout:g} s (--timeout)"
                )
                return
            time.sleep(_POLL_SECONDS)

    def _result(self, attempt):
        reports = attempt["reports"]
        digests = {
            index: report.get("weights_sha256")
            for index, report in enumerate(reports)
            if report.get("weights_sha256")
        }
        if len(set(digests.values())) > 1:
            raise ClusterError(
                f"The workers ended with different weights: {digests}. They "
                "trained out of sync; do not use this run."
            )
        digest = next(iter(digests.values()), None)
        self.say(
            f"{len(digests)} of {self.workers} worker(s) reported their final "
            f"weights, all identical (sha256 {str(digest)[:12]})"
        )
        return LaunchResult(
            export_path=reports[0].get("export"),
            restarts=len(self.attempts) - 1,
            attempts=self.attempts,
            weights_sha256=digest,
        )

    def _write_summary(self):
        if not self.run_dir.is_dir():
            return
        summary = {
            "workers": self.workers,
            "max_restarts": self.max_restarts,
            "restarts": max(len(self.attempts) - 1, 0),
            "attempts": self.attempts,
        }
        (self.run_dir / "launch.json").write_text(json.dumps(summary, indent=1))
