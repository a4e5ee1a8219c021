"""Figures: the seed diagram with measured norms, and diagnostics over training."""

import math
import sys

import pytest

from keras_mtl import plots
from keras_mtl.diagnostics import GradientReport

REPORT = GradientReport(
    tasks=["coarse", "fine"],
    losses={"coarse": 1.25, "fine": 2.5},
    norms={
        "input": {"coarse": 1.5e-4, "fine": 2.5e-5},
        "trunk": {"coarse": 0.4321, "fine": 0.1234},
        "head1": {"coarse": 0.3456, "fine": 0.0789},
        "head2": {"coarse": 0.0, "fine": 0.5678},
    },
    cosine={"trunk": -0.25, "head1": 0.125, "shared": -0.0625},
)


def test_gradient_flow_draws_every_box_arrow_and_measured_norm(tmp_path):
    png, svg = plots.plot_gradient_flow(REPORT, tmp_path / "flow.png")
    assert png == tmp_path / "flow.png" and svg == tmp_path / "flow.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    text = svg.read_text()
    for box in ("Input", "Trunk", "Head 1", "Head 2", "Loss 1", "Loss 2"):
        assert f">{box}<" in text, box
    for number in range(1, 11):
        assert f"({number})" in text, number
    # Each backward arrow carries its measured norm, and the Loss 1 -> Head 2
    # value is the report's, not a drawn-in zero.
    for value in ("0.4321", "0.1234", "0.3456", "0.0789", "0.5678", "1.50e-04"):
        assert value in text, value
    assert "cosine: -0.25" in text
    changed = GradientReport(
        REPORT.tasks,
        REPORT.losses,
        {**REPORT.norms, "head2": {"coarse": 3.5e-09, "fine": 0.5678}},
        REPORT.cosine,
    )
    _, svg = plots.plot_gradient_flow(changed, tmp_path / "changed")
    assert "Loss 1 on Head 2:" in svg.read_text()
    assert "3.50e-09 (measured)" in svg.read_text()


def test_gradient_history_plots_norms_cosines_and_weights(tmp_path):
    logs = [REPORT.to_logs() for _ in range(3)]
    history = {
        key: [entry[key] * (1 + i) for i, entry in enumerate(logs)] for key in logs[0]
    }
    history["grad_cosine_trunk"] = [-0.5, 0.0, 0.5]
    history["coarse_weight"] = [1.0, 0.9, 0.8]
    history["fine_weight"] = [1.0, 1.1, 1.2]
    png, svg = plots.plot_gradient_history(history, ["coarse", "fine"], tmp_path / "h")
    assert png.exists() and png.stat().st_size > 20_000
    text = svg.read_text()
    for title in ("Gradient norm per block and loss", "Loss weights", "epoch"):
        assert title in text
    assert "Cosine between the coarse and fine gradients" in text
    with pytest.raises(ValueError, match="weighting.diagnostics=true"):
        plots.plot_gradient_history({"loss": [1.0]}, ["coarse", "fine"], tmp_path / "x")


def test_missing_values_print_as_not_available(tmp_path):
    report = GradientReport(
        REPORT.tasks,
        REPORT.losses,
        {**REPORT.norms, "input": {"coarse": math.nan, "fine": math.nan}},
        REPORT.cosine,
    )
    _, svg = plots.plot_gradient_flow(report, tmp_path / "flow")
    assert "Loss 1: n/a" in svg.read_text()


def test_without_matplotlib_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match='pip install "keras-mtl\\[plots\\]"'):
        plots.plot_gradient_flow(REPORT, tmp_path / "flow")
