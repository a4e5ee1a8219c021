"""Tuning objectives that do not depend on the loss weights being tuned.

Keras logs `val_loss` as the *weighted* sum of the task losses, so it scales
with the weights: a tuner that minimises it drives every weight towards zero
and picks the smallest weights, not the best model. Keras Tuner's
`MultiObjective` is a plain signed sum of such scale-dependent numbers. The
objectives offered here read only what the weights do not scale:

| `tuning.objective` | logged as | direction | needs |
|---|---|---|---|
| `delta_m` | `val_delta_m` | min | cached single-task baselines (`keras-mtl baseline`) |
| `unweighted_loss` | `val_unweighted_loss` | min | nothing: the sum of the per-task validation losses |
| `val_<task>_<metric>` | itself | the metric's (`val_fine_accuracy`: max) | nothing |
| `auto` (default) | | | `delta_m` when baselines are cached, else `unweighted_loss` |

`TaskObjectives` adds `val_delta_m` and `val_unweighted_loss` to each epoch's
logs, so Keras Tuner's own best-epoch bookkeeping, checkpoints and progress
display see them like any Keras metric.
"""

import keras
import keras_tuner as kt

from keras_mtl import tasks as task_lib
from keras_mtl.evaluation.delta_m import delta_m

NAMED_OBJECTIVES = {
    "delta_m": "val_delta_m",
    "unweighted_loss": "val_unweighted_loss",
}


class TaskObjectives(keras.callbacks.Callback):
    """Adds loss-weight-free objectives to every epoch's logs.

    At the end of each epoch it adds `unweighted_loss` and
    `val_unweighted_loss` (the sums of the per-task losses, which Keras logs
    unweighted) and, given the baselines' validation metrics, `val_delta_m`
    (`keras_mtl.delta_m` of the validation headline metrics, in percent).
    Later callbacks (Keras Tuner's, `History`, the progress bar) see them.

    Args:
        tasks: The `TaskConfig`s (`config.tasks`).
        baselines: The single-task baselines' validation metrics,
            `{task: {metric: value}}`, or None.

    Example:

    ```python
    model.fit(train, validation_data=validation, callbacks=[
        TaskObjectives(config.tasks, baselines.metrics("validation"))
    ])
    ```
    """

    def __init__(self, tasks, baselines=None):
        super().__init__()
        self.tasks = list(tasks)
        self.baselines = baselines

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for prefix in ("", "val_"):
            keys = [f"{prefix}{task.name}_loss" for task in self.tasks]
            if all(key in logs for key in keys):
                logs[f"{prefix}unweighted_loss"] = float(sum(logs[k] for k in keys))
        if self.baselines is None:
            return
        validation = {}
        for task in self.tasks:
            metric = task_lib.headline_metric(task)
            key = f"val_{task.name}_{metric}"
            if key not in logs:
                return
            validation[task.name] = {metric: logs[key]}
        logs["val_delta_m"] = delta_m(validation, self.baselines, self.tasks)


def objective_names(config):
    """Every objective `tuning.objective` accepts for `config`'s tasks."""
    names = ["auto", *NAMED_OBJECTIVES]
    for task in config.tasks:
        for metric in ["loss", *(m.name for m in task_lib.make_metrics(task))]:
            names.append(f"val_{task.name}_{metric}")
    return names


def resolve_objective(config, baselines_available):
    """The `keras_tuner.Objective` that `config.tuning.objective` names.

    Args:
        config: A `keras_mtl.Config`.
        baselines_available: Whether single-task baselines are cached (what
            `"auto"` chooses by).

    Returns:
        A `keras_tuner.Objective` (`name`, `direction`).

    Raises:
        ValueError: A weighted loss (`val_loss`, `loss`), a training metric,
            or a name that is not one of `objective_names(config)`.
    """
    name = config.tuning.objective
    if name == "auto":
        name = "delta_m" if baselines_available else "unweighted_loss"
    if name in NAMED_OBJECTIVES.values():
        name = name[len("val_") :]
    if name in NAMED_OBJECTIVES:
        return kt.Objective(NAMED_OBJECTIVES[name], "min")
    if name in ("loss", "val_loss"):
        raise ValueError(
            f"tuning.objective={name!r} is the weighted sum of the task losses, "
            "which shrinks with the loss weights being tuned: the search would "
            "pick the smallest weights, not the best model. Use 'delta_m', "
            "'unweighted_loss' or a per-task metric such as "
            f"'val_{config.tasks[1].name}_loss'. Received: tuning.objective={name!r}"
        )
    known = objective_names(config)
    if name not in known:
        hint = ""
        if f"val_{name}" in known:
            hint = f" Tune against the validation split: 'val_{name}'."
        raise ValueError(
            f"Unknown tuning.objective {name!r}.{hint} Expected one of {known}. "
            f"Received: tuning.objective={name!r}"
        )
    higher = task_lib.metric_direction(name) == "higher"
    return kt.Objective(name, "max" if higher else "min")
