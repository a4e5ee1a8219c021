"""`train.steps_per_execution`: how many training steps one `tf.function` call runs.

Keras runs `steps_per_execution` steps in one call of its compiled train
function (a `tf.while_loop` over the iterator), so the Python work between
steps (the fit loop, the callbacks' batch hooks, the progress bar) happens
once per call instead of once per step. Every weighting method's
`train_step` still runs once per step inside the loop, so its per-step state
(GradNorm's weights, FAMO's logits, RLW's seed, ...) updates exactly as with
one step per call; `tests/test_steps_per_execution.py` checks it for every
registered method. Batch hooks see the logs of the last step of each call
(running means), so `TerminateOnNaN` stops at most that many steps later.

`"auto"`, the default, is `AUTO_STEPS`, capped at the steps of an epoch
when they are known (`train` knows them; `build_model` alone does not).
`compile_model` resolves it, since `model.compile` takes integers only
(Keras 3.15 has no `"auto"` of its own). The default was chosen by
`benchmarks/run_all.py training`: on the adult MLP (2-3 ms steps, 2 CPU
cores) whole epochs ran 1.5-1.7x as fast as with one step per call, and on
the shapes CNN (30 ms steps) 1.0-1.1x.

Under `MirroredStrategy` on logical CPU devices, and under
`MultiWorkerMirroredStrategy` on CPU workers, TensorFlow 2.21 fails with
more than one step per call ("must feed a value for placeholder"); there
`resolve_steps_per_execution` says so in one line (a warning for an integer
that asked for more, an info line for `"auto"`) and runs one step per call.
"""

import dataclasses
import logging

import tensorflow as tf

logger = logging.getLogger(__name__)

AUTO_STEPS = 16


def on_logical_cpus(strategy):
    """Whether `strategy` mirrors its replicas over CPU devices only: logical
    CPUs of one process (`MirroredStrategy`) or CPU workers
    (`MultiWorkerMirroredStrategy`)."""
    if strategy is None or strategy.num_replicas_in_sync < 2:
        return False
    mirrored = (
        tf.distribute.MirroredStrategy,
        tf.distribute.MultiWorkerMirroredStrategy,
    )
    if not isinstance(strategy, mirrored):
        return False
    devices = strategy.extended.worker_devices
    return all("CPU" in device.upper() for device in devices)


def resolve_steps_per_execution(value, strategy=None, steps_per_epoch=None):
    """The number of steps per call for `train.steps_per_execution = value`.

    Args:
        value: An integer >= 1 or `"auto"`.
        strategy: The `tf.distribute.Strategy` of the run (default: none).
        steps_per_epoch: The training steps of an epoch, when known; caps
            `"auto"`.

    Returns:
        An integer >= 1: 1 on logical CPU devices (with a warning).
    """
    steps = AUTO_STEPS if value == "auto" else int(value)
    if value == "auto" and steps_per_epoch:
        steps = max(1, min(steps, int(steps_per_epoch)))
    if steps > 1 and on_logical_cpus(strategy):
        log = logger.info if value == "auto" else logger.warning
        log(
            "train.steps_per_execution=%r: TensorFlow 2.21 cannot run several steps "
            "per call under a mirrored strategy on CPU devices (logical CPUs or "
            "CPU workers); running 1.",
            value,
        )
        return 1
    return steps


def with_steps_per_execution(config, strategy=None, steps_per_epoch=None):
    """`config` with `train.steps_per_execution` resolved to an integer.

    `build_model` passes it to `model.compile`, which takes integers only.
    """
    steps = resolve_steps_per_execution(
        config.train.steps_per_execution, strategy, steps_per_epoch
    )
    if steps == config.train.steps_per_execution:
        return config
    train = dataclasses.replace(config.train, steps_per_execution=steps)
    return dataclasses.replace(config, train=train)
