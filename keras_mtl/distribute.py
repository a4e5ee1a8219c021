"""Which `tf.distribute` strategy a run uses.

| `train.strategy` | GPUs visible | no GPU |
|---|---|---|
| `auto` (default) | `MirroredStrategy` over all GPUs (or the first `train.replicas`) | default strategy; `MirroredStrategy` over `train.replicas` logical CPUs when > 1 |
| `mirrored` | as `auto` | `MirroredStrategy` over `max(train.replicas, 1)` logical CPUs |
| `default` | default strategy (one device) | default strategy |
| `multi_worker` | `MultiWorkerMirroredStrategy` from `TF_CONFIG` over each worker's GPUs | the same, one CPU replica per worker |

Logical CPUs let the N-replica path run for real on a CPU-only machine. They
must be configured before TensorFlow starts its runtime: `make_strategy` does
it when it can and otherwise says what to do. There `train.jit_compile` is
refused, and `train.steps_per_execution` runs one step per call, said in
one line (`keras_mtl.steps_per_execution`).
"""

import tensorflow as tf


def configure_cpu_replicas(replicas):
    """Splits the first CPU into `replicas` logical devices.

    Call it before anything else touches TensorFlow's devices (in a notebook,
    in the first cell). Asking for fewer devices than are configured is fine.

    Args:
        replicas: How many logical CPU devices are needed.

    Raises:
        RuntimeError: TensorFlow already started with fewer logical CPUs.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    configured = tf.config.get_logical_device_configuration(cpu) or [None]
    if len(configured) >= replicas:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
        )
    except RuntimeError:
        available = len(tf.config.list_logical_devices("CPU"))
        if available < replicas:
            raise RuntimeError(
                f"train.replicas={replicas} needs {replicas} logical CPU devices but "
                f"TensorFlow already started with {available}. Call "
                f"keras_mtl.configure_cpu_replicas({replicas}) before any other "
                "TensorFlow call (in a notebook: in the first cell, then restart)."
            ) from None


def make_strategy(train):
    """The `tf.distribute.Strategy` for a `TrainConfig` (see the module table).

    Args:
        train: `config.train`.

    Returns:
        A strategy; `strategy.num_replicas_in_sync` is its replica count.

    Raises:
        ValueError: The request cannot run here (more GPU replicas than GPUs,
            `jit_compile`, which fails on logical CPUs in TensorFlow 2.21, or a
            missing or wrong `TF_CONFIG` for `multi_worker`).
    """
    if train.strategy == "default":
        return tf.distribute.get_strategy()
    if train.strategy == "multi_worker":
        from keras_mtl.multi_worker.cluster import make_multi_worker_strategy

        return make_multi_worker_strategy(train)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if train.replicas > len(gpus):
            raise ValueError(
                f"train.replicas={train.replicas} but only {len(gpus)} GPU(s) are "
                "visible. Use train.replicas=0 for all of them."
            )
        count = train.replicas or len(gpus)
        return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(count)])
    replicas = max(train.replicas, 1)
    if train.strategy == "auto" and replicas == 1:
        return tf.distribute.get_strategy()
    if replicas > 1:
        if train.jit_compile:
            raise ValueError(
                f"train.jit_compile=true fails under MirroredStrategy on logical "
                f"CPU devices (train.replicas={replicas}, no GPU) in TensorFlow "
                "2.21. Set train.jit_compile=false or train.replicas=1."
            )
        configure_cpu_replicas(replicas)
    # Collective all-reduce keys restart with every new strategy, so a second
    # MirroredStrategy in one process (a notebook, a test run) collides with the
    # first ("Shape mismatch in the collective instance"); logical CPUs share
    # memory anyway, so reduce on one of them instead.
    return tf.distribute.MirroredStrategy(
        [f"/cpu:{i}" for i in range(replicas)],
        cross_device_ops=tf.distribute.ReductionToOneDevice("/cpu:0"),
    )


def describe_strategy(strategy):
    """A one-line description such as `MirroredStrategy over 2 replicas`."""
    name = type(strategy).__name__
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"  # Its class is CollectiveAllReduce...
    return f"{name} over {strategy.num_replicas_in_sync} replica(s)"
