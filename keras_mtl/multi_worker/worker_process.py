"""One local worker process of the launcher: started, its output pumped, stopped.

Each worker runs in its own process group, so a stop reaches whatever it
started too: SIGTERM to the group, then SIGKILL to what still runs after a
grace period (a hung TensorFlow process may ignore SIGTERM). Its output goes
to the launcher's log line by line with a `[worker i]` prefix, and the last
lines are kept for the error message when it fails.
"""

import collections
import os
import signal
import subprocess
import threading
import time


def describe_exit(code):
    """A worker's exit code in words: `"SIGKILL"` or `"status 1"`."""
    if code is not None and code < 0:
        return signal.Signals(-code).name
    return f"status {code}"


class WorkerProcess:
    """One worker process in its own process group, its output pumped.

    Args:
        index: The worker's index in the cluster (its `[worker i]` prefix).
        argv: The worker's command.
        env: The worker's environment.
        log: Where its prefixed output goes.
        lock: The lock that every writer of `log` holds.
    """

    def __init__(self, index, argv, env, log, lock):
        self.index = index
        self.tail = collections.deque(maxlen=30)
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            errors="replace",
        )
        self._log, self._lock = log, lock
        self._pump = threading.Thread(target=self._forward, daemon=True)
        self._pump.start()

    def _forward(self):
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.tail.append(line)
            with self._lock:
                self._log.write(f"[worker {self.index}] {line}\n")
                self._log.flush()

    def poll(self):
        return self.process.poll()

    def signal_group(self, signum):
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def group_alive(self):
        """Whether the worker or anything it started still runs."""
        self.process.poll()  # Reap the leader, or it counts as a member.
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def close(self):
        self._pump.join(timeout=5)
        self.process.stdout.close()


def stop_workers(workers, grace):
    """SIGTERM to every worker's process group, SIGKILL after `grace` s.

    Returns:
        The indices of the workers that had to be killed.
    """
    alive = [worker for worker in workers if worker.group_alive()]
    for worker in alive:
        worker.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [worker for worker in alive if worker.group_alive()]
    for worker in alive:
        worker.signal_group(signal.SIGKILL)
    for worker in workers:
        worker.process.wait(timeout=30)
    return [worker.index for worker in alive]
