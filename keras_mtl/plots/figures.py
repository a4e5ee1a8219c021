"""What every keras-mtl figure shares: matplotlib on demand, colours, saving.

Figures are drawn on `matplotlib.figure.Figure`, without pyplot, so plotting
never opens a window or changes the caller's backend, and each is written as a
PNG and an SVG (text kept as text).
"""

import math
from pathlib import Path

LOSS_COLORS = ("#1f77b4", "#d95f02")  # Loss 1 / Head 1 blue, Loss 2 / Head 2 orange
BOTH_COLOR = "#333333"
FORWARD_COLOR = "#8c8c8c"
RIGHT_COLOR = "#1a7f37"
WRONG_COLOR = "#cf222e"


def new_figure(**kwargs):
    """A `matplotlib.figure.Figure(**kwargs)`; a clear ImportError without it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'Plotting needs matplotlib: pip install "keras-mtl[plots]"'
        ) from None
    return Figure(**kwargs)


def save_figure(figure, path, dpi=150):
    """Writes `figure` to `<stem>.png` and `<stem>.svg`; returns both paths.

    Args:
        figure: A matplotlib `Figure`.
        path: The file stem; a `.png` or `.svg` suffix is replaced.
        dpi: The PNG's resolution.

    Returns:
        `[png_path, svg_path]`.
    """
    import matplotlib

    stem = Path(path)
    if stem.suffix in (".png", ".svg"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        figure.savefig(paths[0], dpi=dpi, bbox_inches="tight")
        figure.savefig(paths[1], bbox_inches="tight")
    return paths


def format_value(value):
    """A number as a short label: 4 significant digits, "n/a" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"
