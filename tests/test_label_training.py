"""Training with labels as real data has them, end to end: a regression
target in grams with missing labels of both tasks, through `train`, the
export and the command line."""

import csv

import numpy as np
import pytest

import keras_mtl
from keras_mtl import cli

SPECIES = ("Adelie", "Chinstrap", "Gentoo")


def write_penguins(path, rows=300, seed=0, mass_missing=0.4, species_missing=0.3):
    """Species from bill and flipper; body mass in grams (~4200 +- 800)."""
    rng = np.random.default_rng(seed)
    species = rng.integers(0, 3, rows)
    bill = 40 + 5 * species + rng.normal(0, 1.0, rows)
    flipper = 190 + 10 * species + rng.normal(0, 3.0, rows)
    mass = 3500 + 700 * species + 30 * (flipper - 200) + rng.normal(0, 100, rows)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["bill", "flipper", "species", "mass"])
        for i in range(rows):
            writer.writerow(
                [
                    f"{bill[i]:.2f}",
                    f"{flipper[i]:.1f}",
                    "?" if rng.random() < species_missing else SPECIES[species[i]],
                    "?" if rng.random() < mass_missing else f"{mass[i]:.0f}",
                ]
            )
    return mass


def penguin_config(path, tmp_path, extra=()):
    return keras_mtl.load_config(
        "adult",
        [
            "name=penguins",
            f"data.path={path}",
            "data.exclude_columns=[]",
            "tasks.0.name=species",
            "tasks.0.num_classes=3",
            "tasks.0.label=species",
            "tasks.1.name=mass",
            "tasks.1.kind=regression",
            "tasks.1.label=mass",
            "tasks.1.positive=''",
            "model.width=16",
            "model.head_units=16",
            "train.epochs=25",
            "train.batch_size=32",
            "train.learning_rate=0.01",
            "train.monitor=val_mass_loss",
            f"train.run_dir={tmp_path / 'runs'}",
            f"export.base_dir={tmp_path / 'saved_models'}",
            *extra,
        ],
    )


def test_a_regression_target_trains_standardised_and_answers_in_grams(tmp_path):
    path = tmp_path / "penguins.csv"
    mass = write_penguins(path)
    config = penguin_config(path, tmp_path)
    datasets = keras_mtl.load_datasets(config)
    (scale,) = [f for f in datasets.features if f.name == "mass"]
    assert 3900 < scale.mean < 4700 and 500 < scale.std < 900  # grams
    model, history, _ = keras_mtl.train(config, datasets=datasets, verbose=0)
    # The loss is the standardised one: it starts near 1, not near 1e6.
    assert history.history["mass_loss"][0] < 5
    assert 0.45 < history.history["mass_labelled"][0] < 0.75
    metrics = keras_mtl.evaluate(model, datasets.test, config)
    # MAE in grams, well under the spread of the target (sd ~800 g).
    assert metrics["mass"]["mae"] < 0.5 * float(np.std(mass))
    assert metrics["species"]["accuracy"] > 0.8

    export = keras_mtl.export_run(model, config, datasets, metrics)
    loaded = keras_mtl.LoadedModel(export)
    rows = {"bill": np.array([40.0, 50.0]), "flipper": np.array([190.0, 210.0])}
    served = loaded.predict(rows)["mass"].reshape(-1)
    in_process = np.asarray(model(rows)["mass"]).reshape(-1)
    np.testing.assert_allclose(served, in_process, rtol=1e-5)
    assert 3000 < served[0] < 4200 < served[1] < 6000  # Adelie-like, Gentoo-like
    assert keras_mtl.evaluate_saved_model(export)["mass"]["mae"] == pytest.approx(
        metrics["mass"]["mae"], rel=1e-4
    )


def test_a_task_without_any_training_label_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "penguins.csv"
    write_penguins(path, rows=60, mass_missing=1.0)
    config = penguin_config(path, tmp_path)
    config_path = tmp_path / "penguins.toml"
    config_path.write_text(config.to_toml())
    status = cli.main(["train", "--config", str(config_path), "--verbose", "0"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(error) == 1 and "mass" in error[0] and "train" in error[0], error
