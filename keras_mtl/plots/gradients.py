"""The seed diagram with measured gradient norms, and diagnostics over training.

Example:

```python
report = keras_mtl.diagnose_gradients(model, batch)
keras_mtl.plots.plot_gradient_flow(report, "diagnostics/gradient_flow")
```
"""

from keras_mtl.plots.figures import (
    BOTH_COLOR,
    FORWARD_COLOR,
    LOSS_COLORS,
    format_value,
    new_figure,
    save_figure,
)

BOX_WIDTH, BOX_HEIGHT = 2.6, 0.9


def _box(ax, center, text, color="#f2f2f2"):
    from matplotlib.patches import FancyBboxPatch

    x, y = center
    ax.add_patch(
        FancyBboxPatch(
            (x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2),
            BOX_WIDTH,
            BOX_HEIGHT,
            boxstyle="round,pad=0.05,rounding_size=0.15",
            facecolor=color,
            edgecolor="#333333",
            linewidth=1.2,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=12, fontweight="bold")


def _arrow(ax, points, color, width=1.6):
    """A polyline from `points[0]` with an arrowhead at `points[-1]`."""
    xs, ys = zip(*points, strict=True)
    ax.plot(xs[:-1], ys[:-1], color=color, linewidth=width, solid_capstyle="butt")
    ax.annotate(
        "",
        xy=points[-1],
        xytext=points[-2],
        arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": width},
    )


def _label(ax, position, lines, align="left"):
    """Stacked lines of `(text, color)` starting at `position`."""
    x, y = position
    for index, (text, color) in enumerate(lines):
        ax.text(
            x,
            y - index * 0.32,
            text,
            ha=align,
            va="center",
            fontsize=9,
            color=color,
        )


def plot_gradient_flow(report, path, title=None):
    """Draws the seed diagram with each backward arrow's measured gradient norm.

    Forward arrows (1)-(4) and (7) point up; backward arrows (5), (6), (8),
    (9), (10) point down, each labelled with the norm of the gradient of the
    loss it carries on the block it enters (on the inputs for (10)). Loss 1's
    gradient on Head 2 is printed from the measurement, whatever it is.

    Args:
        report: A `keras_mtl.diagnostics.GradientReport`.
        path: Where to write; `.png` and `.svg` are added to the stem.
        title: The figure's title (default: a description of the report).

    Returns:
        The `[png, svg]` paths written.
    """
    task1, task2 = report.tasks
    norms, cosine = report.norms, report.cosine
    figure = new_figure(figsize=(9.5, 10.5))
    ax = figure.add_subplot()
    ax.set_xlim(-2.2, 11.8)
    ax.set_ylim(-0.6, 12.4)
    ax.set_axis_off()
    cx = 3.2
    levels = {"Input": 0.6, "Trunk": 3.2, "Head 1": 5.8, "Head 2": 8.4, "Loss 2": 11.0}
    for name, y in levels.items():
        color = "#fde9d9" if name == "Loss 2" else "#f2f2f2"
        _box(ax, (cx, y), name, color)
    loss1 = (8.6, 8.4)
    _box(ax, loss1, "Loss 1", "#dbe9f6")
    ax.text(cx, 12.05, f"task: {task2}", ha="center", fontsize=9, color=LOSS_COLORS[1])
    ax.text(
        loss1[0],
        loss1[1] + 0.65,
        f"task: {task1}",
        ha="center",
        fontsize=9,
        color=LOSS_COLORS[0],
    )

    half = BOX_HEIGHT / 2
    up_x, down_x = cx - 0.55, cx + 0.55
    stack = list(levels.values())
    forward_numbers = (1, 2, 3, 4)
    backward = {
        # (number, lines of (text, color)) for the gap above each level.
        0: (
            10,
            [
                (f"Loss 1: {format_value(norms['input'][task1])}", LOSS_COLORS[0]),
                (f"Loss 2: {format_value(norms['input'][task2])}", LOSS_COLORS[1]),
                ("(on the inputs)", BOTH_COLOR),
            ],
        ),
        1: (
            9,
            [
                (f"Loss 1: {format_value(norms['trunk'][task1])}", LOSS_COLORS[0]),
                (f"Loss 2: {format_value(norms['trunk'][task2])}", LOSS_COLORS[1]),
                (f"cosine: {format_value(cosine['trunk'])}", BOTH_COLOR),
            ],
        ),
        2: (6, [(f"Loss 2: {format_value(norms['head1'][task2])}", LOSS_COLORS[1])]),
        3: (5, [(f"Loss 2: {format_value(norms['head2'][task2])}", LOSS_COLORS[1])]),
    }
    for index in range(4):
        low, high = stack[index] + half, stack[index + 1] - half
        _arrow(ax, [(up_x, low), (up_x, high)], FORWARD_COLOR)
        ax.text(
            up_x - 0.15,
            (low + high) / 2,
            f"({forward_numbers[index]})",
            ha="right",
            va="center",
            fontsize=10,
            color=FORWARD_COLOR,
        )
        number, lines = backward[index]
        color = BOTH_COLOR if index < 2 else LOSS_COLORS[1]
        _arrow(ax, [(down_x, high), (down_x, low)], color)
        middle = (low + high) / 2
        ax.text(
            down_x + 0.15,
            middle + 0.3,
            f"({number})",
            ha="left",
            va="center",
            fontsize=10,
            fontweight="bold",
            color=color,
        )
        _label(ax, (down_x + 0.15, middle - 0.05), lines)

    # (7) Head 1 -> Loss 1 and (8) Loss 1 -> Head 1, as in the seed diagram.
    head1_y = levels["Head 1"]
    right = cx + BOX_WIDTH / 2
    loss1_bottom = loss1[1] - half
    _arrow(
        ax,
        [
            (right, head1_y + 0.2),
            (loss1[0] - 0.5, head1_y + 0.2),
            (loss1[0] - 0.5, loss1_bottom),
        ],
        FORWARD_COLOR,
    )
    ax.text(
        loss1[0] - 0.65,
        (head1_y + loss1_bottom) / 2 + 0.3,
        "(7)",
        ha="right",
        va="center",
        fontsize=10,
        color=FORWARD_COLOR,
    )
    _arrow(
        ax,
        [
            (loss1[0] + 0.5, loss1_bottom),
            (loss1[0] + 0.5, head1_y - 0.2),
            (right, head1_y - 0.2),
        ],
        LOSS_COLORS[0],
    )
    ax.text(
        loss1[0] + 0.65,
        (head1_y + loss1_bottom) / 2 + 0.3,
        "(8)",
        ha="left",
        va="center",
        fontsize=10,
        fontweight="bold",
        color=LOSS_COLORS[0],
    )
    _label(
        ax,
        (loss1[0] + 0.65, (head1_y + loss1_bottom) / 2 - 0.05),
        [(f"Loss 1: {format_value(norms['head1'][task1])}", LOSS_COLORS[0])],
    )
    ax.text(
        loss1[0],
        head1_y - 0.75,
        f"Head 1: cosine {format_value(cosine['head1'])}, "
        f"Trunk+Head 1: {format_value(cosine['shared'])}",
        ha="center",
        fontsize=9,
        color=BOTH_COLOR,
    )
    # The measured gradient of Loss 1 on Head 2 (no arrow: the design says none).
    ax.text(
        cx - BOX_WIDTH / 2 - 0.2,
        levels["Head 2"],
        f"Loss 1 on Head 2:\n{format_value(norms['head2'][task1])} (measured)",
        ha="right",
        va="center",
        fontsize=9,
        color=LOSS_COLORS[0],
        style="italic",
    )

    losses = ", ".join(
        f"{task} {format_value(value)}" for task, value in report.losses.items()
    )
    ax.set_title(
        title or "Gradient flow: norm of each loss's gradient on the block it enters",
        fontsize=13,
    )
    ax.text(
        4.8,
        -0.5,
        f"Forward arrows up (grey), backward arrows down. Unweighted losses: {losses}.",
        ha="center",
        va="center",
        fontsize=9,
        color=BOTH_COLOR,
    )
    return save_figure(figure, path)


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
    styles = {"trunk": "-", "head1": "--", "head2": ":"}
    names = {"trunk": "Trunk", "head1": "Head 1", "head2": "Head 2"}
    for index, task in enumerate(tasks):
        for block, style in styles.items():
            values = history[f"grad_norm_{block}_{task}"]
            if block == "head2" and index == 0:
                continue  # Loss 1 on Head 2: zero, nothing to draw on a log axis
            axes[0].plot(
                epochs,
                values,
                style,
                marker="o",
                markersize=3,
                color=LOSS_COLORS[index],
                label=f"Loss {index + 1} ({task}) on {names[block]}",
            )
    axes[0].set_yscale("log")
    axes[0].set_title("Gradient norm per block and loss")
    axes[0].set_ylabel("||gradient|| (unweighted loss)")
    for block, style in (("trunk", "-"), ("head1", "--"), ("shared", "-.")):
        label = {"shared": "Trunk + Head 1"}.get(block, names.get(block))
        axes[1].plot(
            epochs,
            history[f"grad_cosine_{block}"],
            style,
            marker="o",
            markersize=3,
            color=BOTH_COLOR,
            label=label,
        )
    axes[1].axhline(0.0, color=FORWARD_COLOR, linewidth=0.8)
    axes[1].set_ylim(-1.05, 1.05)
    axes[1].set_title(f"Cosine between the {tasks[0]} and {tasks[1]} gradients")
    axes[1].set_ylabel("cosine")
    if has_weights:
        for index, task in enumerate(tasks):
            axes[2].plot(
                epochs,
                history[f"{task}_weight"],
                marker="o",
                markersize=3,
                color=LOSS_COLORS[index],
                label=f"{task} (Loss {index + 1})",
            )
        axes[2].set_title("Loss weights")
        axes[2].set_ylabel("weight")
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
