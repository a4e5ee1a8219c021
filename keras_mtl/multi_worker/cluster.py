"""The cluster a worker belongs to: `TF_CONFIG`, its strategy, its role.

Every worker runs the same command with its own `TF_CONFIG`, the JSON that
`tf.distribute.MultiWorkerMirroredStrategy` reads:

```json
{"cluster": {"worker": ["host1:12345", "host2:12345"]},
 "task": {"type": "worker", "index": 0}}
```

Worker 0 is the chief (or the one task of a `"chief"` job, when the cluster
has one): it alone writes the run directory and the export. `ps` and
`evaluator` tasks belong to `ParameterServerStrategy` and side-car evaluation,
which Keras 3 `fit` does not support; they are refused with a message.
"""

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

EXAMPLE_TF_CONFIG = json.dumps(
    {
        "cluster": {"worker": ["host1:12345", "host2:12345"]},
        "task": {"type": "worker", "index": 0},
    }
)
_HOW_TO = (
    f"Set TF_CONFIG on every machine, e.g. TF_CONFIG='{EXAMPLE_TF_CONFIG}' "
    '(with "index": 1 on the second machine), or run `keras-mtl train '
    "--workers N` to start N workers on this machine."
)
_JOBS = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """A validated `TF_CONFIG`.

    Attributes:
        jobs: `{"chief": [address], "worker": [address, ...]}` ("chief" only
            when the cluster has one).
        task_type: `"chief"` or `"worker"`.
        task_index: This task's index in its job.
    """

    jobs: dict
    task_type: str
    task_index: int

    @property
    def num_workers(self):
        """Tasks that train: the chief, if any, and every worker."""
        return sum(len(self.jobs.get(job, ())) for job in _JOBS)

    @property
    def worker_index(self):
        """This task's position among all training tasks; the chief is 0."""
        if self.task_type == "chief":
            return 0
        return len(self.jobs.get("chief", ())) + self.task_index

    @property
    def is_chief(self):
        return self.worker_index == 0


def _fail(problem, raw):
    raise ValueError(
        f"train.strategy='multi_worker': {problem}. {_HOW_TO} Received: TF_CONFIG={raw!r}"
    )


def _check_address(address, raw):
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit():
        _fail(f"cluster address {address!r} is not host:port", raw)


def _check_jobs(cluster, raw):
    """`{"chief": [...], "worker": [...]}` from the 'cluster' object."""
    unknown = sorted(set(cluster) - set(_JOBS))
    if unknown:
        _fail(f"unknown job {unknown[0]!r} in 'cluster'; expected {list(_JOBS)}", raw)
    jobs = {}
    for job in _JOBS:
        if job not in cluster:
            continue
        addresses = cluster[job]
        if not isinstance(addresses, list) or not addresses:
            _fail(f"cluster.{job} must be a non-empty list of 'host:port'", raw)
        for address in addresses:
            _check_address(address, raw)
        jobs[job] = list(addresses)
    if "worker" not in jobs:
        _fail("'cluster' has no 'worker' list", raw)
    if len(jobs.get("chief", ())) > 1:
        _fail("a cluster has at most one chief", raw)
    return jobs


def _check_task(task, jobs, raw):
    """`(task_type, task_index)` from the 'task' object, checked against `jobs`."""
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in jobs:
        _fail(f"task.type must be one of {sorted(jobs)}, found {task_type!r}", raw)
    if not isinstance(task_index, int) or isinstance(task_index, bool):
        _fail(f"task.index must be an integer, found {task_index!r}", raw)
    if not 0 <= task_index < len(jobs[task_type]):
        _fail(
            f"task.index={task_index} is outside cluster.{task_type} "
            f"(indices 0..{len(jobs[task_type]) - 1})",
            raw,
        )
    return task_type, task_index


def parse_tf_config(raw):
    """Validates the text of a `TF_CONFIG` for multi-worker training.

    Args:
        raw: The JSON text, or None when the variable is not set.

    Returns:
        A `ClusterConfig`.

    Raises:
        ValueError: What is wrong, an example `TF_CONFIG`, and how to fix it.

    Example:

    ```python
    cluster = parse_tf_config(os.environ.get("TF_CONFIG"))
    cluster.num_workers, cluster.is_chief
    ```
    """
    if not raw or not raw.strip():
        _fail("the TF_CONFIG environment variable is not set", raw)
    try:
        tf_config = json.loads(raw)
    except json.JSONDecodeError as error:
        _fail(f"TF_CONFIG is not valid JSON ({error})", raw)
    if not isinstance(tf_config, dict):
        _fail("TF_CONFIG must be a JSON object with 'cluster' and 'task'", raw)
    cluster, task = tf_config.get("cluster"), tf_config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        _fail("TF_CONFIG must have a 'cluster' object and a 'task' object", raw)
    if "ps" in cluster or task.get("type") == "ps":
        _fail(
            "the cluster has 'ps' tasks, which belong to ParameterServerStrategy; "
            "Keras 3 model.fit does not support it. Use only 'worker' tasks "
            "(and at most one 'chief')",
            raw,
        )
    jobs = _check_jobs(cluster, raw)
    task_type, task_index = _check_task(task, jobs, raw)
    return ClusterConfig(jobs, task_type, task_index)


def read_tf_config(environ=None):
    """The `ClusterConfig` of this process, from `$TF_CONFIG`."""
    return parse_tf_config((environ or os.environ).get("TF_CONFIG"))


def make_multi_worker_strategy(train):
    """A `MultiWorkerMirroredStrategy` over the cluster in `$TF_CONFIG`.

    Each worker trains on its GPUs (the first `train.replicas` when set) or,
    without one, on its CPU as one device: nothing is split into logical CPUs.
    Blocks until every worker of the cluster has started.

    Args:
        train: `config.train`.

    Returns:
        The strategy; `num_replicas_in_sync` counts the replicas of all workers.

    Raises:
        ValueError: `TF_CONFIG` is missing or wrong, or `train.replicas`
            cannot be met on this worker.
    """
    import tensorflow as tf

    from keras_mtl.compat import keras_multi_worker

    read_tf_config()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus and train.replicas > len(gpus):
        raise ValueError(
            f"train.replicas={train.replicas} but this worker sees only {len(gpus)} "
            "GPU(s). Use train.replicas=0 for all of them."
        )
    if gpus and 0 < train.replicas < len(gpus):
        tf.config.set_visible_devices(gpus[: train.replicas], "GPU")
    if not gpus and train.replicas > 1:
        raise ValueError(
            f"train.replicas={train.replicas} with train.strategy='multi_worker' on a "
            "worker without a GPU: each worker trains on its CPU as one replica. "
            "Start more workers instead, or set train.replicas=0."
        )
    keras_multi_worker.install()
    return tf.distribute.MultiWorkerMirroredStrategy()


def cluster_of(strategy):
    """The `ClusterConfig` a strategy runs on, or None on one machine."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None
    jobs = {
        job: list(addresses)
        for job, addresses in resolver.cluster_spec().as_dict().items()
        if job in _JOBS
    }
    if sum(len(addresses) for addresses in jobs.values()) < 2:
        return None
    return ClusterConfig(jobs, resolver.task_type, int(resolver.task_id or 0))


def is_chief(strategy):
    """Whether this process writes the run directory and the export."""
    cluster = cluster_of(strategy)
    return cluster is None or cluster.is_chief


@contextlib.contextmanager
def chief_or_scratch_dir(path, strategy):
    """Yields `path` on the chief, a temporary directory on other workers.

    Every worker runs the same callbacks (they must take the same decisions),
    but only the chief's files are kept: the others write into a directory
    that is removed on exit.
    """
    if is_chief(strategy):
        yield Path(path)
        return
    scratch = Path(tempfile.mkdtemp(prefix="keras-mtl-worker-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
