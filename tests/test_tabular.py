"""The adult preset end to end: raw CSV rows in, two heads out, raw rows served."""

import csv
import itertools

import numpy as np
import pytest

import keras_mtl


@pytest.fixture
def adult_config(adult_csv, tmp_path):
    return keras_mtl.load_config(
        "adult",
        [
            f"data.path={adult_csv}",
            "data.max_examples=16384",
            "train.epochs=3",
            f"train.run_dir={tmp_path / 'runs'}",
            f"export.base_dir={tmp_path / 'saved_models'}",
        ],
    )


def raw_rows(path, count):
    """The first rows of the file exactly as written: spaces, '?' and all."""
    with open(path, newline="") as file:
        reader = csv.reader(file)
        header = [name.strip() for name in next(reader)]
        return [
            dict(zip(header, row, strict=True))
            for row in itertools.islice(reader, count)
        ]


def test_adult_trains_exports_and_takes_raw_rows(adult_config, adult_csv):
    datasets = keras_mtl.load_datasets(adult_config)
    model, history, _ = keras_mtl.train(adult_config, datasets=datasets, verbose=0)
    metrics = keras_mtl.evaluate(model, datasets.test, adult_config)
    # Better than the majority class (76% earn <= 50K) and than chance AUC.
    assert metrics["income"]["auc"] > 0.75
    assert metrics["marital_status"]["accuracy"] > 0.5
    path = keras_mtl.export_run(model, adult_config, datasets, metrics)

    loaded = keras_mtl.LoadedModel(path)
    names = {feature.name for feature in datasets.features}
    assert set(loaded.input_specs) == names
    assert "hours-per-week" in loaded.input_specs  # CSV header names, hyphens kept
    assert loaded.input_specs["age"].dtype.name == "float32"
    assert loaded.input_specs["workclass"].dtype.name == "string"

    rows = [row for row in raw_rows(adult_csv, 200) if "?" in row["workclass"]][:3]
    rows += raw_rows(adult_csv, 2)
    assert rows[0]["workclass"] == " ?" and rows[3]["workclass"] == " State-gov"
    columns = {
        name: [
            float(row[name])
            if loaded.input_specs[name].dtype.is_floating
            else row[name]
            for row in rows
        ]
        for name in names
    }
    columns["age"][0] = float("nan")  # a missing number is imputed, not propagated
    outputs = loaded.predict(columns)
    assert outputs["marital_status"].shape == (5, 7) and outputs["income"].shape == (
        5,
        1,
    )
    assert np.isfinite(outputs["income"]).all()
    np.testing.assert_allclose(outputs["marital_status"].sum(axis=1), 1.0, rtol=1e-5)

    stripped = {
        k: [v.strip() if isinstance(v, str) else v for v in vs]
        for k, vs in columns.items()
    }
    np.testing.assert_allclose(
        loaded.predict(stripped)["income"], outputs["income"], atol=1e-6
    )
