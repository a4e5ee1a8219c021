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

`"auto"` is `AUTO_STEPS`, capped at the steps of an epoch: on the adult MLP
(2 ms steps, 2 CPU cores) 8 to 32 steps per call made the training steps
15-30% faster; on the shapes CNN (70 ms steps) it changed nothing measurable
(benchmarks/bench_training.py). Keras 3.15 has no `"auto"` of its own.

Under `MirroredStrategy` on logical CPU devices TensorFlow 2.21 fails with
more than one step per call ("must feed a value for placeholder"); there
`resolve_steps_per_execution` warns in one line and runs one step per call.
"""

import dataclasses
import logging

import tensorflow as tf

logger = logging.getLogger(__name__)

AUTO_STEPS = 16


def on_logical_cpus(strategy):
    """Whether `strategy` mirrors over several CPU devices of one process."""
    if strategy is None or strategy.num_replicas_in_sync < 2:
        return False
    if not isinstance(strategy, tf.distribute.MirroredStrategy):
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
        logger.warning(
            "train.steps_per_execution=%r: TensorFlow 2.21 cannot run several steps "
            "per call under MirroredStrategy on logical CPU devices; running 1.",
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
