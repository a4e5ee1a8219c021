"""The seed diagram with each loss's measured gradient norm on every block.

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


# The seed diagram's layout: one column of boxes at x=_CENTER_X, Loss 1 to the
# right of Head 2, the forward arrows left of the column's middle, the
# backward ones right of it.
_CENTER_X = 3.2
_LEVELS = {"Input": 0.6, "Trunk": 3.2, "Head 1": 5.8, "Head 2": 8.4, "Loss 2": 11.0}
_LOSS1 = (8.6, 8.4)
_UP_X, _DOWN_X = _CENTER_X - 0.55, _CENTER_X + 0.55


def _number(ax, position, number, color, align, bold=False):
    """An arrow's number, `(n)`; backward arrows' in bold."""
    weight = {"fontweight": "bold"} if bold else {}
    ax.text(
        *position,
        f"({number})",
        ha=align,
        va="center",
        fontsize=10,
        **weight,
        color=color,
    )


def _draw_boxes(ax, task1, task2):
    for name, y in _LEVELS.items():
        color = "#fde9d9" if name == "Loss 2" else "#f2f2f2"
        _box(ax, (_CENTER_X, y), name, color)
    _box(ax, _LOSS1, "Loss 1", "#dbe9f6")
    ax.text(
        _CENTER_X,
        12.05,
        f"task: {task2}",
        ha="center",
        fontsize=9,
        color=LOSS_COLORS[1],
    )
    ax.text(
        _LOSS1[0],
        _LOSS1[1] + 0.65,
        f"task: {task1}",
        ha="center",
        fontsize=9,
        color=LOSS_COLORS[0],
    )


def _backward_labels(report):
    """`{gap: (number, [(text, color), ...])}` of the backward arrow in the gap
    above each level of the column (0: above Input)."""
    task1, task2 = report.tasks
    norms, cosine = report.norms, report.cosine
    return {
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


def _draw_column_arrows(ax, report):
    """Forward arrows (1)-(4) up the column; backward (10), (9), (6), (5) down."""
    half = BOX_HEIGHT / 2
    stack = list(_LEVELS.values())
    backward = _backward_labels(report)
    for index in range(4):
        low, high = stack[index] + half, stack[index + 1] - half
        _arrow(ax, [(_UP_X, low), (_UP_X, high)], FORWARD_COLOR)
        _number(ax, (_UP_X - 0.15, (low + high) / 2), index + 1, FORWARD_COLOR, "right")
        number, lines = backward[index]
        color = BOTH_COLOR if index < 2 else LOSS_COLORS[1]
        _arrow(ax, [(_DOWN_X, high), (_DOWN_X, low)], color)
        middle = (low + high) / 2
        _number(ax, (_DOWN_X + 0.15, middle + 0.3), number, color, "left", bold=True)
        _label(ax, (_DOWN_X + 0.15, middle - 0.05), lines)


def _draw_loss1_arrows(ax, report):
    """(7) Head 1 -> Loss 1 and (8) Loss 1 -> Head 1, as in the seed diagram,
    with Head 1's cosines and Loss 1's measured gradient on Head 2."""
    task1 = report.tasks[0]
    norms, cosine = report.norms, report.cosine
    head1_y = _LEVELS["Head 1"]
    right = _CENTER_X + BOX_WIDTH / 2
    loss1_x, loss1_bottom = _LOSS1[0], _LOSS1[1] - BOX_HEIGHT / 2
    middle = (head1_y + loss1_bottom) / 2
    _arrow(
        ax,
        [
            (right, head1_y + 0.2),
            (loss1_x - 0.5, head1_y + 0.2),
            (loss1_x - 0.5, loss1_bottom),
        ],
        FORWARD_COLOR,
    )
    _number(ax, (loss1_x - 0.65, middle + 0.3), 7, FORWARD_COLOR, "right")
    _arrow(
        ax,
        [
            (loss1_x + 0.5, loss1_bottom),
            (loss1_x + 0.5, head1_y - 0.2),
            (right, head1_y - 0.2),
        ],
        LOSS_COLORS[0],
    )
    _number(ax, (loss1_x + 0.65, middle + 0.3), 8, LOSS_COLORS[0], "left", bold=True)
    _label(
        ax,
        (loss1_x + 0.65, middle - 0.05),
        [(f"Loss 1: {format_value(norms['head1'][task1])}", LOSS_COLORS[0])],
    )
    ax.text(
        loss1_x,
        head1_y - 0.75,
        f"Head 1: cosine {format_value(cosine['head1'])}, "
        f"Trunk+Head 1: {format_value(cosine['shared'])}",
        ha="center",
        fontsize=9,
        color=BOTH_COLOR,
    )
    # The measured gradient of Loss 1 on Head 2 (no arrow: the design says none).
    ax.text(
        _CENTER_X - BOX_WIDTH / 2 - 0.2,
        _LEVELS["Head 2"],
        f"Loss 1 on Head 2:\n{format_value(norms['head2'][task1])} (measured)",
        ha="right",
        va="center",
        fontsize=9,
        color=LOSS_COLORS[0],
        style="italic",
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
    figure = new_figure(figsize=(9.5, 10.5))
    ax = figure.add_subplot()
    ax.set_xlim(-2.2, 11.8)
    ax.set_ylim(-0.6, 12.4)
    ax.set_axis_off()
    _draw_boxes(ax, task1, task2)
    _draw_column_arrows(ax, report)
    _draw_loss1_arrows(ax, report)
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
