"""`build_single_task_model`: Input -> Trunk -> one head, the baseline's model.

A single-task baseline is the multi-task model's Trunk with one head on it,
trained on one task alone: the same inputs and encoding, the same `Trunk`
(`model.trunk`, `model.width`, `model.depth`, `model.dropout`), one `TaskHead`
of `model.head_units` x `model.head_depth`, the same optimizer. Delta-m
(`keras_mtl.delta_m`) compares each task of a multi-task model with it.
"""

import tensorflow as tf

from keras_mtl import tasks as task_lib
from keras_mtl.models.heads import TaskHead
from keras_mtl.models.multi_task_model import (
    DEFAULT_FEATURES,
    MultiTaskModel,
    _inputs_and_encoding,
    make_optimizer,
)
from keras_mtl.models.trunk import ConvTrunk, MLPTrunk


def _find_task(config, task):
    name = getattr(task, "name", task)
    for candidate in config.tasks:
        if candidate.name == name:
            return candidate
    raise ValueError(
        f"No task {name!r} in the config. Expected one of {config.task_names}. "
        f"Received: task={name!r}"
    )


def build_single_task_model(config, task, features=None, *, strategy=None):
    """Builds and compiles the single-task baseline model of one task.

    Building and compiling happen inside `strategy.scope()`, as in
    `build_model`. The model's one output is named after the task, so labels
    are `{task: y}`; its logs carry no task prefix (`val_accuracy`).

    Args:
        config: A `keras_mtl.Config`.
        task: A task name or `TaskConfig` of `config`.
        features: The input specs (`Datasets.features`); defaults to the
            `shapes` image input.
        strategy: A `tf.distribute.Strategy`; defaults to the current one.

    Returns:
        A compiled `MultiTaskModel` with one output, `{task: prediction}`.

    Example:

    ```python
    model = build_single_task_model(load_config("shapes"), "fine")
    list(model.output)  # ["fine"]
    ```
    """
    task = _find_task(config, task)
    strategy = strategy or tf.distribute.get_strategy()
    features = tuple(features or DEFAULT_FEATURES)
    model_config = config.model
    dtype = "mixed_float16" if config.train.mixed_precision else None
    trunk_class = ConvTrunk if model_config.trunk == "cnn" else MLPTrunk
    with strategy.scope():
        inputs, x = _inputs_and_encoding(features)
        trunk = trunk_class(
            model_config.width,
            model_config.depth,
            model_config.dropout,
            dtype=dtype,
            name="trunk",
        )
        head = TaskHead(
            units=model_config.head_units,
            output_units=task_lib.output_units(task),
            output_activation=task_lib.output_activation(task),
            depth=model_config.head_depth,
            dropout=model_config.dropout,
            dtype=dtype,
            name="head",
        )
        _, prediction = head(trunk(x))
        model = MultiTaskModel(
            inputs=inputs,
            outputs={task.name: prediction},
            name=f"single_task_{task.name}",
        )
        model.compile(
            optimizer=make_optimizer(config.train),
            loss={task.name: task_lib.make_loss(task)},
            metrics={task.name: task_lib.make_metrics(task)},
            jit_compile=config.train.jit_compile,
            steps_per_execution=config.train.steps_per_execution,
        )
    return model
