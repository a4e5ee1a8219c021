"""Gradient-boosted trees per task: the heads' rows, columns and metrics."""

import numpy as np
import pytest

import keras_mtl
from keras_mtl.evaluation.gradient_boosting import gradient_boosting_baseline


@pytest.fixture
def tabular_config(tmp_path):
    rng = np.random.default_rng(0)
    rows = 400
    x = rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], size=rows)
    group = np.where(colour == "red", "a", np.where(colour == "green", "b", "c"))
    lines = ["x,colour,group,high"]
    for i in range(rows):
        value = "?" if i % 50 == 0 else f"{x[i]:.4f}"
        lines.append(f"{value},{colour[i]},{group[i]},{'yes' if x[i] > 0 else 'no'}")
    path = tmp_path / "table.csv"
    path.write_text("\n".join(lines) + "\n")
    return keras_mtl.load_config(
        "adult",
        [
            f"data.path={path}",
            "data.exclude_columns=[]",
            'tasks.0.label="group"',
            "tasks.0.num_classes=3",
            'tasks.1.label="high"',
            'tasks.1.positive="yes"',
            "data.label_fraction={income=0.5}",
            "train.batch_size=32",
        ],
    )


def test_trees_learn_from_the_heads_labelled_rows(tabular_config):
    scores = gradient_boosting_baseline(tabular_config, seed=0)
    datasets = keras_mtl.load_datasets(tabular_config)
    assert scores["labelled"] == datasets.labelled["train"]
    assert scores["labelled"]["income"] < scores["labelled"]["marital_status"]
    test = scores["test"]
    # group is colour in other words; high is x > 0 (x sometimes missing).
    assert test["marital_status"]["accuracy"] == 1.0
    assert test["income"]["auc"] > 0.9
    assert set(test["income"]) == {"loss", "auc", "accuracy"}
    assert scores["validation"]["income"]["accuracy"] > 0.8


def test_trees_need_tabular_data():
    with pytest.raises(ValueError, match="data.source='csv'"):
        gradient_boosting_baseline(keras_mtl.load_config("shapes"))
