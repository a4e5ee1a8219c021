"""Runs `keras-mtl` in a child process and reads its peak memory and wall time."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

KERAS_MTL = str(Path(sys.executable).parent / "keras-mtl")


def run_measured(args, timeout=1800):
    """Runs `keras-mtl *args`; returns `(seconds, peak_rss_mib, stdout)`.

    The peak is the child's own `ru_maxrss` from `wait4`, not the machine's.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen([KERAS_MTL, *args], stdout=out, stderr=err, env=env)
        timer = threading.Timer(timeout, lambda: os.kill(process.pid, signal.SIGKILL))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode:
        raise RuntimeError(
            f"keras-mtl {' '.join(args)} exited {process.returncode}:\n{stderr[-3000:]}"
        )
    return seconds, usage.ru_maxrss / 1024, stdout  # Linux reports KiB
