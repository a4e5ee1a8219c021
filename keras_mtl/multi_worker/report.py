"""What a worker tells the local launcher, through one JSON file per worker.

`keras-mtl train --workers N` starts each worker with
`$KERAS_MTL_WORKER_REPORT` naming a file; the worker replaces it atomically as
it goes: `"started"`, `"ready"` (the cluster is up), `"finished"` (with a
digest of its final weights and, on the chief, the export path). The launcher
reads these files for its start-up timeout, to check that every worker ended
with the same weights, and for its result. Without the variable, as on
several machines, every function here does nothing.
"""

import ctypes
import hashlib
import json
import os
import signal
import sys

REPORT_ENV = "KERAS_MTL_WORKER_REPORT"
LAUNCHER_PID_ENV = "KERAS_MTL_LAUNCHER_PID"
_PR_SET_PDEATHSIG = 1


def report_path():
    """The report file of this worker, or None when no launcher started it."""
    return os.environ.get(REPORT_ENV) or None


def read_report(path):
    """The last report a worker wrote, or {} before its first."""
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, json.JSONDecodeError):
        return {}


def report(**fields):
    """Merges `fields` into this worker's report file, atomically."""
    path = report_path()
    if path is None:
        return
    state = {**read_report(path), **fields, "pid": os.getpid()}
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as file:
        json.dump(state, file, default=str)
    os.replace(temporary, path)


def weights_digest(model):
    """SHA-256 of the model's and the optimizer's variables, in order.

    Workers that trained in sync end with the same digest.
    """
    digest = hashlib.sha256()
    variables = list(model.weights)
    if model.optimizer is not None:
        variables += list(model.optimizer.variables)
    for variable in variables:
        value = variable.numpy()
        digest.update(f"{variable.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def report_finished(model, history, export=None):
    """Reports the end of training: epochs run, weights digest, export."""
    if report_path() is None:
        return
    report(
        stage="finished",
        epochs=list(history.epoch),
        weights_sha256=weights_digest(model),
        export=None if export is None else str(export),
    )


def attach_to_launcher():
    """Dies with the launcher that started this worker (Linux), instead of
    training on as an orphan after the launcher was killed."""
    launcher = os.environ.get(LAUNCHER_PID_ENV)
    if not launcher:
        return
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(launcher):  # The launcher died before prctl.
        os._exit(1)
