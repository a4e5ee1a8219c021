"""`build_single_task_model`: Input -> Trunk -> one head, the baseline's model.

A single-task baseline is the multi-task model's Trunk with one head on it,
trained on one task alone: the same inputs and encoding, the same `Trunk`
(`model.trunk`, `model.width`, `model.depth`, `model.dropout`), one `TaskHead`
of `model.head_units` x `model.head_depth`, the same optimizer, all made by
the functions that make the two-head model. Delta-m
(`keras_mtl.evaluation.delta_m`) compares each task of a multi-task model with
it.
"""

import tensorflow as tf

from keras_mtl.data.features import normalized_targets
from keras_mtl.models.build import (
    compile_model,
    in_target_units,
    make_head,
    trunk_output,
)
from keras_mtl.models.inputs import DEFAULT_FEATURES
from keras_mtl.models.multi_task_model import MultiTaskModel
from keras_mtl.tasks import find_task


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
    task = find_task(config, task)
    strategy = strategy or tf.distribute.get_strategy()
    features = tuple(features or DEFAULT_FEATURES)
    scales = normalized_targets(config, features)
    with strategy.scope():
        inputs, representation = trunk_output(config, features, tasks=1)
        if isinstance(representation, list | tuple):  # A gated trunk, one gate.
            (representation,) = representation
        _, prediction = make_head(config, task, "head")(representation)
        model = MultiTaskModel(
            inputs=inputs,
            outputs={
                task.name: in_target_units(prediction, task.name, scales.get(task.name))
            },
            name=f"single_task_{task.name}",
        )
        compile_model(model, config, tasks=[task], scales=scales)
    return model
