"""Gradient diagnostics over training: norms, cosines and loss weights per epoch.

The seed diagram with one measurement's norms is `gradient_flow.py`
(`plot_gradient_flow`, also importable from here).

Example:

```python
report = keras_mtl.diagnose_gradients(model, batch)
keras_mtl.plots.plot_gradient_flow(report, "diagnostics/gradient_flow")
keras_mtl.plots.plot_gradient_history(
    history.history, ["coarse", "fine"], "diagnostics/gradient_history"
)
```
"""

from keras_mtl.plots.figures import (
    BOTH_COLOR,
    FORWARD_COLOR,
    LOSS_COLORS,
    new_figure,
    save_figure,
)
from keras_mtl.plots.gradient_flow import plot_gradient_flow

__all__ = ["plot_gradient_flow", "plot_gradient_history"]

_BLOCK_NAMES = {"trunk": "Trunk", "head1": "Head 1", "head2": "Head 2"}


def _plot_norms(ax, epochs, history, tasks):
    styles = {"trunk": "-", "head1": "--", "head2": ":"}
    for index, task in enumerate(tasks):
        for block, style in styles.items():
            values = history[f"grad_norm_{block}_{task}"]
            if block == "head2" and index == 0:
                continue  # Loss 1 on Head 2: zero, nothing to draw on a log axis
            ax.plot(
                epochs,
                values,
                style,
                marker="o",
                markersize=3,
                color=LOSS_COLORS[index],
                label=f"Loss {index + 1} ({task}) on {_BLOCK_NAMES[block]}",
            )
    ax.set_yscale("log")
    ax.set_title("Gradient norm per block and loss")
    ax.set_ylabel("||gradient|| (unweighted loss)")


def _plot_cosines(ax, epochs, history, tasks):
    for block, style in (("trunk", "-"), ("head1", "--"), ("shared", "-.")):
        label = {"shared": "Trunk + Head 1"}.get(block, _BLOCK_NAMES.get(block))
        ax.plot(
            epochs,
            history[f"grad_cosine_{block}"],
            style,
            marker="o",
            markersize=3,
            color=BOTH_COLOR,
            label=label,
        )
    ax.axhline(0.0, color=FORWARD_COLOR, linewidth=0.8)
    ax.set_ylim(-1.05, 1.05)
    ax.set_title(f"Cosine between the {tasks[0]} and {tasks[1]} gradients")
    ax.set_ylabel("cosine")


def _plot_weights(ax, epochs, history, tasks):
    for index, task in enumerate(tasks):
        ax.plot(
            epochs,
            history[f"{task}_weight"],
            marker="o",
            markersize=3,
            color=LOSS_COLORS[index],
            label=f"{task} (Loss {index + 1})",
        )
    ax.set_title("Loss weights")
    ax.set_ylabel("weight")


def plot_gradient_history(history, tasks, path, title=None):
    """Per-task gradient norms, cosines and weights over the epochs of a run.

    Args:
        history: Epoch logs as lists, e.g. `history.history` or a run's
            `history.json`, holding `grad_norm_<block>_<task>` and
            `grad_cosine_<block>` (and `<task>_weight` when logged).
        tasks: The task names in head order.
        path: Where to write; `.png` and `.svg` are added to the stem.
        title: The figure's title.

    Returns:
        The `[png, svg]` paths written.
    """
    key = f"grad_norm_trunk_{tasks[0]}"
    if key not in history:
        raise ValueError(
            f"The history holds no gradient diagnostics (no {key!r}); train with "
            "weighting.diagnostics=true. Received keys: "
            f"{sorted(history)[:12]}"
        )
    epochs = [e + 1 for e in range(len(history[key]))]
    has_weights = all(f"{task}_weight" in history for task in tasks)
    panels = 3 if has_weights else 2
    figure = new_figure(figsize=(5.2 * panels, 4.4))
    axes = [figure.add_subplot(1, panels, i + 1) for i in range(panels)]
    _plot_norms(axes[0], epochs, history, tasks)
    _plot_cosines(axes[1], epochs, history, tasks)
    if has_weights:
        _plot_weights(axes[2], epochs, history, tasks)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    if has_weights:
        axes[2].ticklabel_format(axis="y", useOffset=False)
    figure.suptitle(title or "Gradient diagnostics over training", fontsize=13)
    figure.tight_layout()
    return save_figure(figure, path)
