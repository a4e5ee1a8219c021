"""The directories a run writes, checked and locked before the first epoch.

`check_writable_dir` refuses a path that cannot become a directory this
process writes (a file where a directory should be, a read-only place), so a
bad `train.run_dir` or `export.base_dir` fails at once, not after training.
`lock_run_dir` lets one `train` at a time use `<train.run_dir>/<name>/`: a
second one is refused with the holder's pid. `pid_alive` is what the lock and
the export's temporary directories ask of a writer that may have been killed.

Nothing here imports TensorFlow: the command line calls it before it starts.
"""

import contextlib
import os
from pathlib import Path

from keras_mtl.config import resolve_path

try:
    import fcntl
except ImportError:  # Not POSIX: the lock falls back to the recorded pid.
    fcntl = None

LOCK_FILE = ".lock"

# Run directories this process holds: realpath -> [file descriptor, depth].
_held = {}


def run_dir_for(config):
    """`<train.run_dir>/<name>`: where a run keeps its backup, logs and history."""
    return resolve_path(config.train.run_dir) / config.name


def pid_alive(pid):
    """Whether a process with id `pid` runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # It exists, under another user.
        return True
    return True


def check_writable_dir(path, key, value):
    """Raises `ValueError` unless `path` is, or can become, a writable directory.

    `path` itself need not exist: its nearest existing ancestor must then be
    a writable directory (nothing is created here).

    Args:
        path: The directory to be written, e.g. `<train.run_dir>/<name>`.
        key: The config key it comes from, e.g. `"train.run_dir"`.
        value: That key's value, as the config has it.
    """
    path = Path(path)
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        problem = f"{existing} is a file where a directory should be"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{existing} is not writable"
    else:
        return
    raise ValueError(
        f"`{key}` must be a directory that keras-mtl can write ({path}), but "
        f"{problem}. Move it away or pick another directory with --set "
        f"{key}=DIR. Received: {key}={value!r}"
    )


def _read_holder(fd):
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _refuse(lock_path, holder):
    who = f"pid {holder}" if holder else "another process"
    raise ValueError(
        f"{lock_path.parent} is in use by another keras-mtl train ({who}, lock "
        f"{lock_path}). Wait for it to finish or stop it, or train elsewhere with "
        "--set train.run_dir=DIR or --set name=NAME."
    )


def _acquire(run_dir):
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / LOCK_FILE
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            # The kernel drops a flock when its holder exits, however it ends.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            holder = _read_holder(fd)
            if holder and holder != os.getpid() and pid_alive(holder):
                raise BlockingIOError
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        _refuse(lock_path, holder)
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _release(fd):
    os.ftruncate(fd, 0)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextlib.contextmanager
def lock_run_dir(run_dir, enabled=True):
    """Holds `<run_dir>/.lock` while the block runs: one `train` per run directory.

    The lock file holds the holder's pid, under an advisory `flock` that the
    kernel releases when the holder exits: a killed run never blocks its
    resume. It is re-entrant within a process (the CLI takes it before loading
    the data, `train` again inside).

    Args:
        run_dir: The run directory; created if missing.
        enabled: False on the workers of a multi-worker job that are not the
            chief: they share the chief's run directory and write none of it.

    Raises:
        ValueError: Another process holds the lock; the message names its pid.

    Example:

    ```python
    with lock_run_dir(run_dir_for(config)):
        ...
    ```
    """
    if not enabled:
        yield
        return
    key = os.path.realpath(run_dir)
    if key not in _held:
        _held[key] = [_acquire(Path(run_dir)), 0]
    _held[key][1] += 1
    try:
        yield
    finally:
        _held[key][1] -= 1
        if not _held[key][1]:
            _release(_held.pop(key)[0])
