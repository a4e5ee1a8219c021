"""`LoadRetries`: when to try again a version directory that failed to load.

A version copied in file by file (`saved_model.pb` first, `variables/`
seconds later) fails to load until the copy ends. TF Serving waits for such a
version; so does the registry: a failed version is tried again on a later
poll, at once when its files have changed since the last try, otherwise after
a backoff that doubles from the poll interval (up to `max_backoff_seconds`).
After `max_num_load_retries` failures on unchanged files it is given up (it
stays END, logged once) until its files change again. Each distinct failure
is logged once, not once per poll.
"""

import dataclasses
import logging
import os
import time

logger = logging.getLogger("keras_mtl.serving")


def directory_fingerprint(path):
    """(relative path, size, mtime) of every file under `path`, sorted: it
    changes whenever a file is added, grows or is rewritten."""
    entries = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue  # removed while we looked
            entries.append(
                (os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns)
            )
    return tuple(sorted(entries))


@dataclasses.dataclass
class _Failure:
    fingerprint: tuple
    count: int  # failures on these files
    next_try: float
    given_up: bool = False
    logged: set = dataclasses.field(default_factory=set)


class LoadRetries:
    """Remembers failed loads and says when each is due again.

    Args:
        poll_wait_seconds: The registry's poll interval, the first backoff.
        max_num_load_retries: Retries on unchanged files before giving up.
        max_backoff_seconds: The longest wait between two tries.
        clock: A monotonic clock (tests pass a fake one).

    Example:

    ```python
    retries = LoadRetries(1.0, 5)
    fingerprint = directory_fingerprint(path)
    if retries.due(key, fingerprint):
        try:
            load(path)
        except Exception as error:
            retries.failed(key, fingerprint, str(error))
    ```
    """

    def __init__(
        self,
        poll_wait_seconds,
        max_num_load_retries,
        max_backoff_seconds=30.0,
        clock=time.monotonic,
    ):
        self.poll_wait_seconds = max(0.0, poll_wait_seconds)
        self.max_retries = max_num_load_retries
        self.max_backoff_seconds = max_backoff_seconds
        self._clock = clock
        self._failures = {}

    def due(self, key, fingerprint):
        """True for a key that never failed, whose files changed since it
        failed, or whose backoff has passed (and that was not given up)."""
        failure = self._failures.get(key)
        if failure is None or failure.fingerprint != fingerprint:
            return True
        return not failure.given_up and self._clock() >= failure.next_try

    def failed(self, key, fingerprint, message):
        """Records a failure; logs it unless this key logged it before.
        Returns the number of failures on these files."""
        failure = self._failures.get(key)
        if failure is None or failure.fingerprint != fingerprint:
            logged = failure.logged if failure is not None else set()
            failure = _Failure(fingerprint, 0, 0.0, logged=logged)
            self._failures[key] = failure
        failure.count += 1
        backoff = self.poll_wait_seconds * 2 ** (failure.count - 1)
        failure.next_try = self._clock() + min(backoff, self.max_backoff_seconds)
        if message not in failure.logged and len(failure.logged) < 100:
            failure.logged.add(message)
            logger.warning("%s", message)
        if failure.count > self.max_retries and not failure.given_up:
            failure.given_up = True
            logger.warning(
                "%s (given up after %d failed loads of unchanged files; tried "
                "again when they change)",
                message,
                failure.count,
            )
        return failure.count

    def forget(self, key):
        """Called once the key loaded, or its directory is gone."""
        self._failures.pop(key, None)

    def keys(self):
        return list(self._failures)
