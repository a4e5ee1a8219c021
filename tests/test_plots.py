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


HISTORY = {
    "coarse_loss": [1.3, 1.0, 0.8, 0.7],
    "val_coarse_loss": [1.2, 1.0, 0.9, 0.95],
    "coarse_accuracy": [0.3, 0.5, 0.6, 0.7],
    "val_coarse_accuracy": [0.3, 0.5, 0.62, 0.61],
    "coarse_weight": [1.0] * 4,
    "fine_loss": [2.4, 2.0, 1.6, 1.4],
    "val_fine_loss": [2.4, 2.1, 1.7, 1.6],
    "fine_accuracy": [0.1, 0.2, 0.4, 0.5],
    "val_fine_accuracy": [0.1, 0.25, 0.4, 0.45],
    "fine_weight": [1.0] * 4,
    "loss": [3.7, 3.0, 2.4, 2.1],
    "val_unweighted_loss": [3.6, 3.1, 2.6, 2.55],
}


def test_history_draws_each_heads_curves_and_marks_the_best_epoch(tmp_path):
    assert plots.history.task_curves(HISTORY, "coarse") == ["loss", "accuracy"]
    png, svg = plots.plot_history(HISTORY, ["coarse", "fine"], tmp_path / "curves.png")
    assert png.stat().st_size > 20_000
    text = svg.read_text()
    for title in (
        "Head 1 (coarse): loss (unweighted)",
        "Head 2 (fine): accuracy",
        "loss (unweighted), lower is better",
        "accuracy, higher is better",
        "Learning curves per head",
    ):
        assert title in text, title
    # Coarse is best at epoch 3 (lowest loss, highest accuracy), fine at 4.
    assert text.count("best validation (epoch 3)") == 2
    assert text.count("best validation (epoch 4)") == 2
    assert "coarse): weight" not in text  # Loss weights are not learning curves.


def test_history_takes_a_keras_history_and_task_configs(tmp_path):
    import keras

    import keras_mtl

    history = keras.callbacks.History()
    history.history = {
        key: value for key, value in HISTORY.items() if not key.startswith("val_")
    }
    history.epoch = [2, 3, 4, 5]  # A resumed run: epochs 3..6.
    tasks = keras_mtl.load_config("shapes").tasks
    _, svg = plots.plot_history(history, tasks, tmp_path / "curves", title="Resumed")
    text = svg.read_text()
    assert "Resumed" in text and "validation" not in text
    assert ">6<" in text  # The x axis counts the run's own epochs.
    with pytest.raises(ValueError, match=r"\['fine_loss'\]"):
        plots.plot_history({"coarse_loss": [1.0]}, tasks, tmp_path / "x")


NAMES = {"coarse": ["round", "polygon"], "fine": ["disk", "ring", "square"]}


def _images_and_predictions():
    import numpy as np

    images = np.zeros((3, 8, 8, 3), dtype="uint8")
    predictions = {
        "coarse": np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]),
        "fine": np.array([[0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]]),
    }
    labels = {"coarse": np.array([0, 1, 1]), "fine": np.array([0, 2, 0])}
    return images, predictions, labels


def test_predictions_grid_colours_right_and_wrong_answers(tmp_path):
    from keras_mtl.plots.figures import RIGHT_COLOR, WRONG_COLOR

    images, predictions, labels = _images_and_predictions()
    png, svg = plots.plot_predictions(
        images, predictions, NAMES, tmp_path / "grid", labels=labels
    )
    assert png.stat().st_size > 5_000
    text = svg.read_text()
    right, wrong = f"fill: {RIGHT_COLOR}", f"fill: {WRONG_COLOR}"
    for answer, color in (
        ("coarse: round 90%", right),
        ("fine: disk 60%", right),
        ("coarse: polygon 80%", right),
        ("fine: square 80%", right),
        ("coarse: round 70% (polygon)", wrong),
        ("fine: ring 50% (disk)", wrong),
    ):
        line = next(line for line in text.splitlines() if f">{answer}<" in line)
        assert color in line, answer
    assert "green: right, red: wrong" in text


def test_predictions_grid_reads_serving_rows_binary_and_regression(tmp_path):
    import numpy as np

    images, predictions, _ = _images_and_predictions()
    rows = [
        {name: values[index].tolist() for name, values in predictions.items()}
        for index in range(3)
    ]
    _, svg = plots.plot_predictions(images[..., 0], rows, NAMES, tmp_path / "rows")
    assert ">fine: ring 50%<" in svg.read_text()
    assert "green" not in svg.read_text()  # No labels, no colours.
    describe = plots.predictions.describe_prediction
    assert describe([0.75], ["<=50K", ">50K"]) == (">50K", 0.75)
    assert describe(np.array([0.25]), ["<=50K", ">50K"]) == ("<=50K", 0.75)
    assert describe([3.14159], None) == ("3.14", None)
    with pytest.raises(ValueError, match="No predictions for task 'fine'"):
        plots.plot_predictions(
            images, {"coarse": predictions["coarse"]}, NAMES, tmp_path / "x"
        )
    short = {name: values[:2] for name, values in predictions.items()}
    with pytest.raises(ValueError, match="a prediction for each of the 3 images"):
        plots.plot_predictions(images, short, NAMES, tmp_path / "x")
