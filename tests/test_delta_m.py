"""Delta-m on hand-made numbers: signs, directions, seeds and bad input."""

import math
import statistics

import pytest

import keras_mtl
from keras_mtl import TaskConfig


def classes(name):
    return TaskConfig(name=name, kind="multiclass", num_classes=3)


CLASSES = [classes("coarse"), classes("fine")]
MIXED = [
    TaskConfig(name="price", kind="regression"),  # MAE: lower is better
    TaskConfig(name="churn", kind="binary"),  # AUC: higher is better
]


def test_a_better_multi_task_model_has_a_negative_delta_m():
    multi = {"coarse": {"accuracy": 0.9}, "fine": {"accuracy": 0.6}}
    single = {"coarse": {"accuracy": 0.8}, "fine": {"accuracy": 0.5}}
    terms = keras_mtl.delta_m_per_task(multi, single, CLASSES)
    assert terms == pytest.approx({"coarse": -12.5, "fine": -20.0})
    assert keras_mtl.delta_m(multi, single, CLASSES) == pytest.approx(-16.25)
    # The worse model against the better one: positive, relative to the other base.
    assert keras_mtl.delta_m(single, multi, CLASSES) == pytest.approx(
        (100 * 0.1 / 0.9 + 100 * 0.1 / 0.6) / 2
    )


def test_each_task_is_signed_by_its_metric_direction():
    # A lower MAE is better (negative term); a lower AUC is worse (positive).
    multi = {"price": {"mae": 0.9, "loss": 5.0}, "churn": {"auc": 0.7}}
    single = {"price": {"mae": 1.0, "loss": 1.0}, "churn": {"auc": 0.8}}
    terms = keras_mtl.delta_m_per_task(multi, single, MIXED)
    assert terms["price"] == pytest.approx(-10.0)
    assert terms["churn"] == pytest.approx(12.5)
    assert keras_mtl.delta_m(multi, single, MIXED) == pytest.approx(1.25)


def test_equal_metrics_give_zero_and_only_headline_metrics_count():
    same = {"coarse": {"accuracy": 0.7, "loss": 1.0}, "fine": {"accuracy": 0.4}}
    worse_loss = {"coarse": {"accuracy": 0.7, "loss": 9.0}, "fine": {"accuracy": 0.4}}
    assert keras_mtl.delta_m(same, same, CLASSES) == 0.0
    assert keras_mtl.delta_m(worse_loss, same, CLASSES) == 0.0


def test_summary_over_seeds_uses_the_mean_baseline_and_sample_std():
    baselines = [
        {"coarse": {"accuracy": 0.7}, "fine": {"accuracy": 0.4}},
        {"coarse": {"accuracy": 0.9}, "fine": {"accuracy": 0.6}},
    ]  # mean: 0.8 and 0.5
    runs = [
        {"coarse": {"accuracy": 0.8}, "fine": {"accuracy": 0.5}},  # 0 %
        {"coarse": {"accuracy": 0.88}, "fine": {"accuracy": 0.55}},  # -10 %
    ]
    summary = keras_mtl.delta_m_summary(runs, baselines, CLASSES)
    assert summary["values"] == pytest.approx([0.0, -10.0])
    assert summary["mean"] == pytest.approx(-5.0)
    assert summary["std"] == pytest.approx(statistics.stdev([0.0, -10.0]))
    assert summary["per_task"] == pytest.approx({"coarse": -5.0, "fine": -5.0})
    single = keras_mtl.delta_m_summary(runs[1], baselines, CLASSES)
    assert single["std"] is None and single["mean"] == pytest.approx(-10.0)


@pytest.mark.parametrize(
    "multi, single, fragment",
    [
        (
            {"coarse": {"accuracy": 0.5}, "fine": {"accuracy": 0.5}},
            {"coarse": {"accuracy": 0.0}, "fine": {"accuracy": 0.5}},
            "baseline 'accuracy' of task 'coarse' is 0",
        ),
        (
            {"coarse": {"accuracy": 0.5}},
            {"coarse": {"accuracy": 0.5}, "fine": {"accuracy": 0.5}},
            "needs the 'accuracy' of task 'fine' in the multi-task metrics",
        ),
        (
            {"coarse": {"accuracy": math.nan}, "fine": {"accuracy": 0.5}},
            {"coarse": {"accuracy": 0.5}, "fine": {"accuracy": 0.5}},
            "is nan; delta-m needs finite metrics",
        ),
    ],
)
def test_bad_metrics_are_refused_with_the_task_named(multi, single, fragment):
    with pytest.raises(ValueError, match=fragment):
        keras_mtl.delta_m(multi, single, CLASSES)
