"""Evaluation reports: both held-out splits, directions, delta-m."""

import keras
import pytest

import keras_mtl


def test_the_report_has_both_splits_and_each_metric_direction(tiny_config):
    datasets = keras_mtl.load_datasets(tiny_config)
    keras.utils.set_random_seed(0)
    model = keras_mtl.build_model(tiny_config, datasets.features)
    report = keras_mtl.evaluation_report(model, datasets, tiny_config)
    assert report.test == keras_mtl.evaluate(model, datasets.test, tiny_config)
    assert report.validation == keras_mtl.evaluate(
        model, datasets.validation, tiny_config
    )
    assert report.headline == {"coarse": "accuracy", "fine": "accuracy"}
    assert report.directions["fine"] == {"loss": "lower", "accuracy": "higher"}
    as_dict = report.to_dict()
    assert as_dict["fine"]["test"] == report.test["fine"]
    assert as_dict["fine"]["directions"]["accuracy"] == "higher"
    table = report.to_markdown()
    assert "| fine | accuracy | higher |" in table
    assert len(table.strip().splitlines()) == 2 + 4  # header + 2 tasks x 2 metrics
    half = {
        task: {"accuracy": report.test[task]["accuracy"] / 2} for task in report.test
    }
    assert report.delta_m(half) == pytest.approx(-100.0)  # twice the baseline
