"""The trade-off plot of a search: Task 1's metric against Task 2's, per trial.

Every finished trial is a dot coloured by its loss-weight ratio; the Pareto
front (trials no other trial beats on both tasks) is joined and ringed, the
reference trial (the config's own weights) is a square, the chosen trial is a
star, and dashed lines mark the single-task baselines when
they exist. Both axes point towards "better", so the best corner is always the
top right. Needs matplotlib: `pip install "keras-mtl[plots]"`.
"""

import math

from keras_mtl.tasks import headline_metric
from keras_mtl.tuning.results import pareto_front, task_metric_keys


def _import_matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import LogNorm
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            "The trade-off plot needs matplotlib. Install it with "
            '`pip install "keras-mtl[plots]"`.'
        ) from None
    return Figure, FigureCanvasAgg, LogNorm


def _finite_points(rows, key_x, key_y):
    """The rows with a finite value of both metrics: the finished trials."""
    return [
        row
        for row in rows
        if isinstance(row.get(key_x), float)
        and isinstance(row.get(key_y), float)
        and math.isfinite(row[key_x])
        and math.isfinite(row[key_y])
    ]


def _draw_trials(figure, axes, points, keys, tasks, log_norm):
    """Every trial as a dot coloured by its loss-weight ratio, with a colour bar."""
    (key_x, key_y), (task_x, task_y) = keys, tasks
    ratio_key = f"weight_{task_y.name}"
    ratios = [max(row.get(ratio_key) or 1.0, 1e-12) for row in points]
    low, high = min(ratios, default=1.0), max(ratios, default=1.0)
    if low == high:
        low, high = low / 2, high * 2
    dots = axes.scatter(
        [row[key_x] for row in points],
        [row[key_y] for row in points],
        c=ratios,
        cmap="viridis",
        norm=log_norm(low, high),
        s=45,
        zorder=3,
        label="trial",
    )
    if not points:
        return
    bar = figure.colorbar(dots, ax=axes)
    bar.set_label(
        f"loss-weight ratio {task_y.name} / {task_x.name} "
        f"({task_x.name} weight = 1, log scale)"
    )
    ticks = [
        step * 10.0**power
        for power in range(-4, 5)
        for step in (1, 2, 5)
        if low <= step * 10.0**power <= high
    ]
    bar.set_ticks(ticks, labels=[f"{tick:g}" for tick in ticks])
    bar.ax.minorticks_off()


def _draw_front(axes, front, key_x, key_y):
    """The Pareto front joined, ringed and numbered by trial."""
    axes.plot(
        [row[key_x] for row in front],
        [row[key_y] for row in front],
        color="tab:red",
        linewidth=1.5,
        zorder=2,
        label="Pareto front",
    )
    axes.scatter(
        [row[key_x] for row in front],
        [row[key_y] for row in front],
        s=130,
        facecolors="none",
        edgecolors="tab:red",
        linewidths=1.5,
        zorder=4,
    )
    for row in front:
        axes.annotate(
            f"#{row['trial']}",
            (row[key_x], row[key_y]),
            textcoords="offset points",
            xytext=(7, -12),
            fontsize=8,
            color="tab:red",
        )


def _draw_chosen(axes, points, key_x, key_y, ratio_key):
    """The chosen trial as a star."""
    for row in (row for row in points if row.get("chosen")):
        axes.scatter(
            [row[key_x]],
            [row[key_y]],
            marker="*",
            s=380,
            color="gold",
            edgecolors="black",
            zorder=5,
            label=f"chosen: trial {row['trial']} "
            f"(ratio {row.get(ratio_key) or 1.0:.3g})",
        )


def _draw_reference(axes, points, key_x, key_y):
    """The reference trial (the config's own loss weights) as a black square."""
    for row in (row for row in points if row.get("reference")):
        axes.scatter(
            [row[key_x]],
            [row[key_y]],
            marker="s",
            s=110,
            facecolors="none",
            edgecolors="black",
            linewidths=1.5,
            zorder=4,
            label=f"reference: trial {row['trial']} (the config's weights)",
        )
        return


def _draw_baselines(axes, baselines, task_x, metric_x, task_y, metric_y):
    axes.axvline(
        baselines[task_x.name][metric_x],
        color="grey",
        linestyle="--",
        linewidth=1,
        label="single-task baselines",
    )
    axes.axhline(
        baselines[task_y.name][metric_y], color="grey", linestyle="--", linewidth=1
    )


def plot_tradeoff(rows, tasks, path, *, baselines=None, title=None):
    """Draws the trade-off plot of a search's `rows` into `path` (PNG).

    Args:
        rows: `keras_mtl.tuning.results.trial_rows(...)`.
        tasks: The `TaskConfig`s, Head 1's first (x axis) then Head 2's (y).
        path: The image file to write.
        baselines: The single-task baselines' validation metrics
            `{task: {metric: value}}`, or None.
        title: The plot's title.

    Returns:
        `path`.

    Raises:
        ImportError: matplotlib is not installed.
    """
    Figure, FigureCanvasAgg, LogNorm = _import_matplotlib()
    (task_x, key_x, dir_x), (task_y, key_y, dir_y) = task_metric_keys(tasks)
    points = _finite_points(rows, key_x, key_y)
    front_ids = set(pareto_front(points, tasks))
    metric_x, metric_y = headline_metric(task_x), headline_metric(task_y)
    figure = Figure(figsize=(7.5, 5.5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    _draw_trials(figure, axes, points, (key_x, key_y), (task_x, task_y), LogNorm)
    front = sorted(
        (row for row in points if row["trial"] in front_ids), key=lambda r: r[key_x]
    )
    if front:
        _draw_front(axes, front, key_x, key_y)
    _draw_reference(axes, points, key_x, key_y)
    _draw_chosen(axes, points, key_x, key_y, f"weight_{task_y.name}")
    if baselines:
        _draw_baselines(axes, baselines, task_x, metric_x, task_y, metric_y)
    # Both axes point towards "better": the best corner is the top right.
    if dir_x == "lower":
        axes.invert_xaxis()
    if dir_y == "lower":
        axes.invert_yaxis()
    axes.set_xlabel(
        f"Head 1 ({task_x.name}): validation {metric_x}, {dir_x} is better \u2192"
    )
    axes.set_ylabel(
        f"Head 2 ({task_y.name}): validation {metric_y}, {dir_y} is better \u2192"
    )
    axes.set_title(title or f"Trade-off over {len(points)} trials")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.savefig(path)
    return path
