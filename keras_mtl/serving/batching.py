"""Server-side batching with TF Serving's `BatchingParameters`.

Concurrent requests for the same model version and signature are merged into
one model call and each caller gets its own rows back, as TF Serving's
`BatchingSession` does on top of its `SharedBatchScheduler`:

- `max_batch_size`: no batch is bigger; a request with more rows is refused.
- `batch_timeout_micros`: how long an open, not yet full batch may wait for
  more requests once a batch thread is free (0: do not wait).
- `max_enqueued_batches`: batches (open or full) a queue may hold; a request
  that would need one more is refused with UNAVAILABLE (HTTP 503), as TF
  Serving's batch scheduler refuses it: the client may retry.
- `num_batch_threads`: batches processed at the same time.
- `allowed_batch_sizes`: batches are padded up to the next of these sizes.

A free batch thread first takes what is already queued, up to
`max_batch_size`, and only waits when the queue holds an open batch younger
than the timeout: under load, batches fill while the threads are busy.
"""

import bisect
import collections
import concurrent.futures
import dataclasses
import os
import threading
import time

import numpy as np

from keras_mtl.serving.status import Code, ServingError, invalid_argument


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's `BatchingParameters`, with its defaults.

    Example:

    ```python
    BatchingParameters(max_batch_size=64, batch_timeout_micros=1000)
    ```
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = dataclasses.field(
        default_factory=lambda: os.cpu_count() or 1
    )
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self):
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"Batching parameter `{name}` must be >= 1. Received: "
                    f"{name}={getattr(self, name)}"
                )
        if self.batch_timeout_micros < 0:
            raise ValueError(
                "Batching parameter `batch_timeout_micros` must be >= 0. Received: "
                f"batch_timeout_micros={self.batch_timeout_micros}"
            )
        sizes = list(self.allowed_batch_sizes)
        if sizes and (
            sizes != sorted(set(sizes))
            or sizes[-1] != self.max_batch_size
            or sizes[0] < 1
        ):
            raise ValueError(
                "`allowed_batch_sizes` must be increasing and end with "
                f"max_batch_size ({self.max_batch_size}). Received: "
                f"allowed_batch_sizes={sizes}"
            )
        if self.pad_variable_length_inputs:
            raise ValueError(
                "`pad_variable_length_inputs` is not supported by keras-mtl serve; "
                "keras-mtl models take fixed-size inputs. Received: "
                "pad_variable_length_inputs=true"
            )

    def warmup_batch_sizes(self):
        """The batch sizes a model call will see: 1, the allowed ones, the max."""
        return sorted({1, self.max_batch_size, *self.allowed_batch_sizes})


class _Task:
    """One caller's rows. A blocking caller (`run`) waits on `done`, a lock
    held until the batch thread releases it; a caller on an event loop
    (`submit`) gets `future`, which the batch thread completes."""

    __slots__ = (
        "inputs",
        "size",
        "enqueued",
        "deadline",
        "done",
        "future",
        "result",
        "error",
    )

    def __init__(self, inputs, size, deadline, future=None):
        self.inputs, self.size, self.deadline = inputs, size, deadline
        self.enqueued = time.monotonic()
        self.future = future
        self.done = None
        if future is None:
            self.done = threading.Lock()
            self.done.acquire()
        self.result = self.error = None

    def wait(self, timeout):
        """Whether the result came within `timeout` seconds (None: no limit)."""
        return self.done.acquire(timeout=-1 if timeout is None else timeout)

    def dropped(self):
        """Whether the caller has given up on it (a cancelled future)."""
        return (
            self.future is not None and not self.future.set_running_or_notify_cancel()
        )

    def finish(self):
        if self.future is None:
            self.done.release()
        elif self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


class _Batch:
    def __init__(self):
        self.tasks, self.size, self.opened = [], 0, None

    def add(self, task):
        if not self.tasks:
            self.opened = task.enqueued
        self.tasks.append(task)
        self.size += task.size


class _Queue:
    def __init__(self, run):
        self.run = run
        self.batches = collections.deque()


class BatchScheduler:
    """Merges concurrent model calls into batches on `num_batch_threads` threads.

    Args:
        parameters: `BatchingParameters`.
        metrics: A `Metrics` for the batching histograms, or None.

    Example:

    ```python
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=32))
    outputs = scheduler.run(key, model_call, {"image": batch}, size=len(batch))
    ```
    """

    def __init__(self, parameters, metrics=None):
        self.parameters = parameters
        self._metrics = metrics
        self._timeout = parameters.batch_timeout_micros / 1e6
        self._condition = threading.Condition()
        self._queues = {}
        self._stopped = False
        self._threads = [
            threading.Thread(
                target=self._work,
                name=f"{parameters.thread_pool_name}_{i}",
                daemon=True,
            )
            for i in range(parameters.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, key, run, inputs, size, deadline=None):
        """Runs `run(inputs)` as part of a batch; returns this call's rows.

        Args:
            key: Calls with equal keys may share a batch (model version,
                signature, inner shapes).
            run: Called with the merged inputs (name -> array); returns name
                -> array with one row per merged input row.
            inputs: Name -> array, all with `size` rows.
            size: The number of rows.
            deadline: A `time.monotonic()` time after which the call is
                dropped with DEADLINE_EXCEEDED, or None.
        """
        task = self._enqueue(key, run, _Task(inputs, size, deadline))
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not task.wait(timeout):
            task.deadline = -1.0  # a batch formed later drops it
            raise ServingError(
                Code.DEADLINE_EXCEEDED, "Request timed out waiting for its batch"
            )
        if task.error is not None:
            raise task.error
        return task.result

    def submit(self, key, run, inputs, size, deadline=None):
        """`run` for a caller that must not block (an event loop): queues the
        call and returns a `concurrent.futures.Future` of its rows. Cancel
        the future to drop the call (a batch formed later leaves it out);
        past `deadline` the batch completes it with DEADLINE_EXCEEDED.
        Refusals (too many rows, a full queue) raise at once, as in `run`."""
        future = concurrent.futures.Future()
        self._enqueue(key, run, _Task(inputs, size, deadline, future))
        return future

    def _enqueue(self, key, run, task):
        limit = self.parameters.max_batch_size
        if task.size > limit:
            raise invalid_argument(
                f"Task size {task.size} is larger than maximum input batch size {limit}"
            )
        with self._condition:
            if self._stopped:
                raise ServingError(Code.UNAVAILABLE, "The batch scheduler is stopped")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(run)
            if not queue.batches or queue.batches[-1].size + task.size > limit:
                if len(queue.batches) >= self.parameters.max_enqueued_batches:
                    raise ServingError(
                        Code.UNAVAILABLE,
                        "The batch scheduling queue to which this task was "
                        "submitted is full",
                    )
                queue.batches.append(_Batch())
            queue.batches[-1].add(task)
            self._condition.notify()
        return task

    def stop(self):
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    def _next_batch(self):
        """A ready (queue, batch) under the lock, or (None, seconds to wait)."""
        now, best, wait = time.monotonic(), None, None
        for key, queue in self._queues.items():
            if not queue.batches:
                continue
            batch = queue.batches[0]
            ready = (
                len(queue.batches) > 1
                or batch.size >= self.parameters.max_batch_size
                or now - batch.opened >= self._timeout
            )
            if ready:
                if best is None or batch.opened < best[2].opened:
                    best = (key, queue, batch)
            else:
                left = self._timeout - (now - batch.opened)
                wait = left if wait is None else min(wait, left)
        if best is None:
            return None, wait
        key, queue, batch = best
        queue.batches.popleft()
        if not queue.batches:
            del self._queues[key]  # drops the model reference with the queue
        return (queue, batch), None

    def _work(self):
        while True:
            with self._condition:
                while True:
                    if self._stopped:
                        return
                    found, wait = self._next_batch()
                    if found is not None:
                        break
                    self._condition.wait(wait)
            self._process(*found)

    def _process(self, queue, batch):
        now = time.monotonic()
        tasks = []
        for task in batch.tasks:
            if task.dropped():
                continue
            if task.deadline is not None and task.deadline < now:
                task.error = ServingError(
                    Code.DEADLINE_EXCEEDED, "Request timed out waiting for its batch"
                )
                task.finish()
            else:
                tasks.append(task)
        if not tasks:
            return
        size = sum(task.size for task in tasks)
        padded = self._padded_size(size)
        try:
            inputs = {
                name: self._pad(
                    np.concatenate([task.inputs[name] for task in tasks]), padded
                )
                for name in tasks[0].inputs
            }
            outputs = queue.run(inputs)
            for value in outputs.values():
                if len(value) != padded:
                    raise ServingError(
                        Code.INTERNAL,
                        "Batched output tensor's 0th dimension does not equal the "
                        "sum of the 0th dimension sizes of the input tensors",
                    )
        except Exception as error:  # every caller of the batch gets the error
            for task in tasks:
                task.error = error
                task.finish()
            return
        start = 0
        for task in tasks:
            end = start + task.size
            task.result = {name: value[start:end] for name, value in outputs.items()}
            start = end
            task.finish()
        if self._metrics:
            self._metrics.record_batch(
                self.parameters.thread_pool_name,
                [(now - task.enqueued) * 1e6 for task in tasks],
                [task.size for task in tasks],
                padded,
                padded - size,
            )

    def _padded_size(self, size):
        sizes = self.parameters.allowed_batch_sizes
        if not sizes:
            return size
        return sizes[bisect.bisect_left(sizes, size)]

    @staticmethod
    def _pad(array, size):
        if len(array) == size:
            return array
        padding = np.repeat(array[:1], size - len(array), axis=0)
        return np.concatenate([array, padding])
