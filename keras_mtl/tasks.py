"""Task kinds: what each head outputs, its loss and its metrics.

| kind | output | loss | metrics (first = the task's headline metric) |
|---|---|---|---|
| `multiclass` | `num_classes` softmax probabilities | sparse categorical cross-entropy | accuracy |
| `binary` | one sigmoid probability | binary cross-entropy | AUC, accuracy |
| `regression` | one linear value | mean squared error | MAE |
"""

import keras

# Whether a larger value of a metric is better. Losses and errors are lower-is-better.
METRIC_DIRECTIONS = {
    "accuracy": "higher",
    "auc": "higher",
    "mae": "lower",
    "loss": "lower",
}


def output_units(task):
    """Width of the task's output layer."""
    return task.num_classes if task.kind == "multiclass" else 1


def output_activation(task):
    return {"multiclass": "softmax", "binary": "sigmoid", "regression": "linear"}[
        task.kind
    ]


def make_loss(task):
    """A fresh Keras loss for the task (probabilities in, not logits)."""
    if task.kind == "multiclass":
        return keras.losses.SparseCategoricalCrossentropy(name=f"{task.name}_loss")
    if task.kind == "binary":
        return keras.losses.BinaryCrossentropy(name=f"{task.name}_loss")
    return keras.losses.MeanSquaredError(name=f"{task.name}_loss")


def make_metrics(task):
    """Fresh Keras metrics for the task, headline metric first."""
    if task.kind == "multiclass":
        return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if task.kind == "binary":
        return [
            keras.metrics.AUC(name="auc"),
            keras.metrics.BinaryAccuracy(name="accuracy"),
        ]
    return [keras.metrics.MeanAbsoluteError(name="mae")]


def headline_metric(task):
    """Name of the metric that summarises the task: accuracy, auc or mae."""
    return {"multiclass": "accuracy", "binary": "auc", "regression": "mae"}[task.kind]


def metric_direction(name):
    """`"higher"` or `"lower"`: which way `name` (e.g. `val_fine_auc`) improves."""
    for metric, direction in METRIC_DIRECTIONS.items():
        if name == metric or name.endswith("_" + metric):
            return direction
    raise ValueError(
        f"Unknown metric {name!r}. Expected a name ending in one of "
        f"{sorted(METRIC_DIRECTIONS)}."
    )


def find_task(config, task):
    """The `TaskConfig` of `config` named `task` (a name or a `TaskConfig`)."""
    name = getattr(task, "name", task)
    for candidate in config.tasks:
        if candidate.name == name:
            return candidate
    raise ValueError(
        f"No task {name!r} in the config. Expected one of {config.task_names}. "
        f"Received: task={name!r}"
    )
