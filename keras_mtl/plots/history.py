"""Per-head learning curves: each task's loss and metrics, train and validation.

Example:

```python
model, history, run_dir = keras_mtl.train(config)
keras_mtl.plots.plot_history(history, config.tasks, run_dir / "learning_curves")
```
"""

from keras_mtl import tasks as task_lib
from keras_mtl.plots.figures import LOSS_COLORS, new_figure, save_figure

# Per-task log entries that are not learning curves.
_NOT_CURVES = ("weight",)


def _task_names(tasks):
    return [getattr(task, "name", task) for task in tasks]


def task_curves(history, task):
    """The curves logged for `task`: `"loss"` first, then its metrics.

    Args:
        history: Epoch logs as lists (`History.history`, `history.json`).
        task: A task name.

    Returns:
        Metric names such as `["loss", "accuracy"]`, for which
        `<task>_<metric>` is in `history`.
    """
    prefix = f"{task}_"
    names = [
        key[len(prefix) :]
        for key in history
        if key.startswith(prefix) and key[len(prefix) :] not in _NOT_CURVES
    ]
    return sorted(names, key=lambda name: (name != "loss", name))


def _direction(metric):
    try:
        return task_lib.metric_direction(metric)
    except ValueError:  # A metric keras-mtl does not know: no "better" side.
        return None


def _label(metric):
    return "loss (unweighted)" if metric == "loss" else metric


def _check_task_losses(logs, names):
    if len(names) != 2:
        raise ValueError(f"Expected the two tasks in head order. Received: {names}")
    missing = [f"{name}_loss" for name in names if f"{name}_loss" not in logs]
    if missing:
        raise ValueError(
            f"Expected per-task losses {missing} in the history (Keras logs "
            f"`<task>_loss` for a model with named outputs). Received keys: "
            f"{sorted(logs)[:16]}"
        )


def _curves_per_task(logs, tasks, names):
    """Each task's curves: the loss, then (for a `TaskConfig`) its headline
    metric, then the other metrics."""
    curves = [task_curves(logs, name) for name in names]
    for index, task in enumerate(tasks):
        if hasattr(task, "kind"):  # A TaskConfig: its headline metric first.
            headline = task_lib.headline_metric(task)
            curves[index].sort(key=lambda m, h=headline: (m != "loss", m != h))
    return curves


def _draw_panel(ax, epochs, logs, task, metric, column):
    """One quantity of one task: training solid, validation dashed, the best
    validation epoch ringed."""
    from matplotlib.ticker import MaxNLocator

    color = LOSS_COLORS[column]
    train = logs[f"{task}_{metric}"]
    ax.plot(
        epochs,
        train,
        "-",
        marker="o",
        markersize=3,
        color=color,
        label="training",
    )
    better = _direction(metric)
    validation = list(logs.get(f"val_{task}_{metric}") or [])
    if validation:
        ax.plot(
            epochs,
            validation,
            "--",
            marker="s",
            markersize=3,
            color=color,
            label="validation",
        )
    if validation and better:
        pick = max if better == "higher" else min
        best = validation.index(pick(validation))
        ax.plot(
            [epochs[best]],
            [validation[best]],
            "o",
            markersize=11,
            markerfacecolor="none",
            markeredgecolor="black",
            label=f"best validation (epoch {epochs[best]})",
        )
    ax.set_title(f"Head {column + 1} ({task}): {_label(metric)}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(_label(metric) + (f", {better} is better" if better else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_history(history, tasks, path, title=None):
    """Draws each head's learning curves, one column per head.

    Each panel is one quantity of one task (its unweighted loss, then each
    metric it logs), with the training curve solid, the validation curve
    dashed and the best validation epoch ringed. Keras logs the per-task
    losses unweighted, so the curves mean the same whatever the loss weights.

    Args:
        history: A `keras.callbacks.History` or epoch logs as lists (its
            `.history`, a run's `history.json`), holding `<task>_loss` and
            optionally `val_<task>_loss` and `<task>_<metric>`.
        tasks: The tasks in head order: `config.tasks` or their names.
        path: Where to write; `.png` and `.svg` are added to the stem.
        title: The figure's title.

    Returns:
        The `[png, svg]` paths written.

    Example:

    ```python
    png, svg = keras_mtl.plots.plot_history(history, config.tasks, "curves")
    ```
    """
    epochs = getattr(history, "epoch", None)
    logs = getattr(history, "history", history)
    names = _task_names(tasks)
    _check_task_losses(logs, names)
    curves = _curves_per_task(logs, tasks, names)
    length = len(logs[f"{names[0]}_loss"])
    epochs = [e + 1 for e in epochs] if epochs else list(range(1, length + 1))
    rows = max(len(names_) for names_ in curves)
    figure = new_figure(figsize=(11, 3.4 * rows + 0.6))
    for column, (task, metrics) in enumerate(zip(names, curves, strict=True)):
        for row, metric in enumerate(metrics):
            ax = figure.add_subplot(rows, 2, row * 2 + column + 1)
            _draw_panel(ax, epochs, logs, task, metric, column)
    figure.suptitle(title or "Learning curves per head", fontsize=13)
    figure.tight_layout()
    return save_figure(figure, path)
