"""The label stage: missing and hidden labels, sample and class weights, scales."""

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_mtl
from keras_mtl.data import tfds_source
from keras_mtl.data.csv_source import split_indices
from keras_mtl.data.features import TargetScale, target_scales
from keras_mtl.data.shapes import render
from keras_mtl.evaluation.baselines import train_baseline

# x identifies the row; letter is multiclass (a, b, c), flag binary (yes = 1).
SMALL_CSV = """x, letter, flag, w
1, a, yes, 1.0
2, ?, no, 2.0
3, b, ?, 0.5
4, ?, ?, 1.0
5, c, yes, 3.0
6, a, no, 1.0
7, b, yes, 2.0
8, a, no, 4.0
"""


def config_for(path, *overrides):
    """Tasks `letter` (multiclass) and `flagged` (binary) of a small CSV."""
    return keras_mtl.load_config(
        "adult",
        [
            f"data.path={path}",
            "data.exclude_columns=[]",
            "data.test_fraction=0.0",
            "data.validation_fraction=0.0",
            "tasks.0.name=letter",
            "tasks.0.label=letter",
            "tasks.0.num_classes=3",
            "tasks.1.name=flagged",
            "tasks.1.label=flag",
            "tasks.1.positive=yes",
            "train.batch_size=2",
            "train.shuffle=false",
            "model.width=8",
            "model.head_units=8",
            *overrides,
        ],
    )


def rows_by_x(dataset):
    """`{x: (inputs, labels[, weights])}` of every row of a batched split."""
    rows = {}
    for batch in dataset.unbatch().as_numpy_iterator():
        rows[int(batch[0]["x"])] = batch
    return rows


@pytest.fixture
def small_csv(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text(SMALL_CSV)
    return path


def test_mask_keeps_rows_with_one_label_and_drops_rows_with_none(small_csv, caplog):
    with caplog.at_level(logging.INFO, logger="keras_mtl.data.csv_source"):
        datasets = keras_mtl.load_datasets(
            config_for(
                small_csv, "tasks.0.sample_weight_column=w", "train.batch_size=7"
            )
        )
    assert "dropped 1 rows with no label for any task" in caplog.text
    assert datasets.sizes["train"] == 7
    # Letters on rows 1, 3, 5, 6, 7, 8; flags on rows 1, 2, 5, 6, 7, 8.
    assert datasets.labelled["train"] == {"letter": 6, "flagged": 6}
    rows = rows_by_x(datasets.train)
    assert sorted(rows) == [1, 2, 3, 5, 6, 7, 8]
    labels = {x: row[1] for x, row in rows.items()}
    assert labels[2]["letter"] == keras_mtl.tasks.MISSING_LABEL
    assert labels[2]["letter"].dtype == np.int32
    assert np.isnan(labels[3]["flagged"][0])
    assert labels[1]["flagged"][0] == 1.0 and labels[2]["flagged"][0] == 0.0
    assert [labels[x]["letter"] for x in (1, 3, 5)] == [0, 1, 2]
    # The weight column is no input; the training split carries its values.
    assert "w" not in rows[1][0]
    # Row 2 has no letter: its weight is never read and stays 1.
    weights = {x: float(row[2]["letter"]) for x, row in rows.items()}
    assert weights == {1: 1.0, 2: 1.0, 3: 0.5, 5: 3.0, 6: 1.0, 7: 2.0, 8: 4.0}


def test_drop_drops_every_row_missing_a_label(small_csv, caplog):
    with caplog.at_level(logging.INFO, logger="keras_mtl.data.csv_source"):
        datasets = keras_mtl.load_datasets(
            config_for(small_csv, "data.missing_labels=drop", "train.batch_size=5")
        )
    assert "dropped 3 rows with a missing label" in caplog.text
    assert datasets.sizes["train"] == 5
    assert datasets.labelled["train"] == {"letter": 5, "flagged": 5}
    assert sorted(rows_by_x(datasets.train)) == [1, 5, 6, 7, 8]


def write_rows(path, count, flag=lambda i: "yes" if i % 2 else "no"):
    lines = ["x, letter, flag, height"]
    for i in range(count):
        lines.append(f"{i}, {'abc'[i % 3]}, {flag(i)}, {i}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_label_fraction_hides_an_exact_seeded_share(tmp_path):
    path = write_rows(tmp_path / "rows.csv", 100)
    base = ["data.validation_fraction=0.2", "train.batch_size=8", "train.shuffle=true"]
    config = config_for(path, *base, "data.label_fraction={letter=0.25}")
    datasets = keras_mtl.load_datasets(config)
    # 80 training rows, all labelled: 20 keep the letter; validation untouched.
    assert datasets.labelled == {
        "train": {"letter": 20, "flagged": 80},
        "validation": {"letter": 20, "flagged": 20},
        "test": {"letter": 0, "flagged": 0},
    }

    def kept(datasets):
        rows = rows_by_x(datasets.train)
        assert len(rows) == 80
        return {x for x, row in rows.items() if row[1]["letter"] >= 0}

    first = kept(datasets)
    assert len(first) == 20
    assert kept(datasets) == first  # the next epoch (reshuffled) hides the same
    assert kept(keras_mtl.load_datasets(config)) == first  # and a new pipeline
    half = config_for(path, *base, "data.label_fraction={letter=0.5}")
    assert first < kept(keras_mtl.load_datasets(half))  # a subset of the half
    both = config.replace(["data.label_fraction_splits=['train', 'validation']"])
    assert keras_mtl.load_datasets(both).labelled["validation"]["letter"] == 5


def test_balanced_and_table_class_weights(small_csv):
    # Training letters a, b, c, a, b, a on rows 1, 3, 5, 6, 7, 8: n = 6, k = 3.
    balanced = {"a": 6 / (3 * 3), "b": 6 / (3 * 2), "c": 6 / (3 * 1)}
    datasets = keras_mtl.load_datasets(
        config_for(small_csv, "tasks.0.class_weight='balanced'", "train.batch_size=7")
    )
    rows = rows_by_x(datasets.train)
    letters = {1: "a", 3: "b", 5: "c", 6: "a", 7: "b", 8: "a"}
    for x, letter in letters.items():
        assert rows[x][2]["letter"] == pytest.approx(balanced[letter])
        assert rows[x][2]["flagged"] == 1.0  # nothing configured
    table = config_for(
        small_csv,
        "tasks.0.class_weight={b=2.5, '2'=4.0}",  # a name and an index (c)
        "tasks.1.class_weight={yes=3.0}",
        "tasks.0.sample_weight_column=w",
        "train.batch_size=7",
    )
    rows = rows_by_x(keras_mtl.load_datasets(table).train)
    assert float(rows[1][2]["letter"]) == 1.0 * 1.0  # a: not in the table
    assert float(rows[3][2]["letter"]) == 2.5 * 0.5  # b times its column weight
    assert float(rows[5][2]["letter"]) == 4.0 * 3.0  # c
    assert float(rows[1][2]["flagged"]) == 3.0 and float(rows[2][2]["flagged"]) == 1.0


def test_unknown_class_weight_key_names_key_task_and_classes(small_csv):
    config = config_for(small_csv, "tasks.0.class_weight={d=2.0}")
    with pytest.raises(
        ValueError, match=r"'d' is not a class of task 'letter'.*\['a', 'b', 'c'\]"
    ):
        keras_mtl.load_datasets(config)


@pytest.mark.parametrize("value", ["-1", "heavy", "inf"])
def test_bad_sample_weight_names_column_line_and_value(tmp_path, value):
    path = tmp_path / "weights.csv"
    path.write_text(SMALL_CSV.replace("3, b, ?, 0.5", f"3, b, ?, {value}"))
    config = config_for(path, "tasks.0.sample_weight_column=w")
    with pytest.raises(ValueError, match=rf"line 4: column 'w' .*'{value}'"):
        keras_mtl.load_datasets(config)


def regression_config(path, *overrides):
    return config_for(
        path,
        "tasks.1.name=height",
        "tasks.1.label=height",
        "tasks.1.kind=regression",
        "tasks.1.positive=''",
        *overrides,
    )


def test_target_scale_comes_from_labelled_training_rows(tmp_path):
    path = tmp_path / "heights.csv"
    path.write_text(
        "x, letter, height\n1, a, 150\n2, b, ?\n3, c, 170\n4, a, 190\n5, b, ?\n"
    )
    datasets = keras_mtl.load_datasets(regression_config(path))
    # Labelled heights 150, 170, 190: mean 170, population std sqrt(800/3).
    scale = target_scales(datasets.features)["height"]
    assert isinstance(scale, TargetScale)
    assert scale.mean == pytest.approx(170.0)
    assert scale.std == pytest.approx(np.sqrt(800 / 3))
    assert datasets.labelled["train"] == {"letter": 5, "height": 3}
    unscaled = regression_config(path, "tasks.1.normalize=false")
    assert target_scales(keras_mtl.load_datasets(unscaled).features) == {}


def test_a_task_without_labels_in_train_or_monitored_validation_fails(tmp_path):
    path = tmp_path / "heights.csv"
    path.write_text(
        "x, letter, height\n" + "".join(f"{i}, {'abc'[i % 3]}, ?\n" for i in range(6))
    )
    with pytest.raises(
        ValueError,
        match=r"Task 'height' has no labelled row in the training split "
        r"\(6 rows; labelled per task: letter: 6, height: 0\)",
    ):
        keras_mtl.load_datasets(regression_config(path))
    # Heights only on the rows that the split sends to training.
    config = regression_config(path, "data.validation_fraction=0.3")
    validation = set(split_indices(10, config)["validation"])
    path.write_text(
        "x, letter, height\n"
        + "".join(
            f"{i}, {'abc'[i % 3]}, {'?' if i in validation else i}\n" for i in range(10)
        )
    )
    with pytest.raises(
        ValueError,
        match=r"'height' has no labelled row in the validation split \(3 rows; "
        r"labelled per task: letter: 3, height: 0\), and train.monitor='val_loss'",
    ):
        keras_mtl.load_datasets(config)
    datasets = keras_mtl.load_datasets(
        config.replace(["train.monitor=val_letter_accuracy"])
    )
    assert datasets.labelled["validation"] == {"letter": 3, "height": 0}


def test_shapes_missing_label_masks_and_drops(tiny_config, shapes_data_dir):
    builder = tfds.builder("shapes/tiny", data_dir=str(shapes_data_dir))
    raw = list(
        builder.as_dataset(split="train[:461]", shuffle_files=False).as_numpy_iterator()
    )
    fine = np.array([int(example["label"]) for example in raw])
    coarse = np.array([render.FINE_TO_COARSE[f] for f in fine])
    # Coarse class 0 is missing; so is one fine class of it: no label at all.
    orphan = next(f for f, c in enumerate(render.FINE_TO_COARSE) if c == 0)
    config = tiny_config.replace(
        ["tasks.0.missing_label=0", f"tasks.1.missing_label={orphan}"]
    )
    datasets = keras_mtl.load_datasets(config)
    assert datasets.sizes["train"] == 461 - (fine == orphan).sum()
    assert datasets.labelled["train"] == {
        "coarse": (coarse != 0).sum(),
        "fine": (fine != orphan).sum(),
    }
    labels = np.concatenate([y["coarse"] for _, y in datasets.train])
    assert labels.min() == -1 and 0 not in labels
    # Each image keeps its own labels (the stage re-attaches them by position).
    fine_of = {example["image"].tobytes(): example["label"] for example in raw}
    for streamed in (
        datasets,
        keras_mtl.load_datasets(config.replace(["data.cache=false"])),
    ):
        for inputs, labels in streamed.train.take(2).as_numpy_iterator():
            images = inputs["image"].astype(np.uint8)
            expected = [fine_of[image.tobytes()] for image in images]
            expected = [-1 if f == orphan else f for f in expected]
            np.testing.assert_array_equal(labels["fine"], expected)
    dropped = keras_mtl.load_datasets(config.replace(["data.missing_labels=drop"]))
    assert dropped.sizes["train"] == (coarse != 0).sum()


def test_tfds_missing_labels_become_missing_values(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    coarse = [0, -1, 2, 3, -1, 5, 6, 7] * 5
    flags = [0, 1, 7, 1, 0, -1, 7, 0] * 5

    def fake_as_dataset(builder, split, **kwargs):
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": tf.zeros((40, 32, 32, 3), tf.uint8),
                "coarse_label": tf.constant(coarse, tf.int64),
                "label": tf.constant(flags, tf.int64),
            }
        )

    config = keras_mtl.load_config(
        "cifar100",
        [
            f"data.data_dir={tmp_path}",
            "tasks.1.kind=binary",
            "tasks.1.missing_label=7",
            "train.batch_size=8",
            "train.shuffle=false",
        ],
    )
    with tfds.testing.mock_data(as_dataset_fn=fake_as_dataset):
        datasets = keras_mtl.load_datasets(config)
        batches = list(datasets.train.take(1).as_numpy_iterator())
    _, labels = batches[0]
    np.testing.assert_array_equal(labels["coarse"], [0, -1, 2, 3, -1, 5, 6, 7])
    assert labels["coarse"].dtype == np.int32
    expected = np.array([0, 1, np.nan, 1, 0, np.nan, np.nan, 0], np.float32)
    np.testing.assert_array_equal(labels["fine"][:, 0], expected)
    assert datasets.labelled["train"] == {"coarse": 30, "fine": 25}


@pytest.mark.parametrize("cache", ["true", "false"])
def test_fit_with_missing_labels_and_sample_weights(tmp_path, cache):
    path = tmp_path / "rows.csv"
    lines = ["x, letter, height, w"]
    for i in range(60):
        letter = "?" if i % 5 == 0 else "abc"[i % 3]
        height = "?" if i % 4 == 1 else str(150 + i)
        lines.append(f"{i}, {letter}, {height}, {1 + i % 3}")
    path.write_text("\n".join(lines) + "\n")
    config = regression_config(
        path,
        f"data.cache={cache}",
        "data.validation_fraction=0.2",
        "data.test_fraction=0.2",
        "train.batch_size=8",
        "tasks.0.class_weight='balanced'",
        "tasks.1.sample_weight_column=w",
        "data.label_fraction={letter=0.5}",
        f"train.run_dir={tmp_path / 'runs'}",
    )
    datasets = keras_mtl.load_datasets(config)
    inputs, labels, weights = next(iter(datasets.train))
    assert sorted(weights) == ["height", "letter"] and weights["letter"].shape == (8,)
    assert len(next(iter(datasets.validation))) == 2
    keras.utils.set_random_seed(0)
    model = keras_mtl.build_model(config, datasets.features)
    history = model.fit(
        datasets.train,
        validation_data=datasets.validation,
        epochs=1,
        verbose=0,
        shuffle=False,
    )
    assert all(np.isfinite(value[0]) for value in history.history.values())
    record = train_baseline(
        config, "letter", 0, datasets=datasets, strategy=tf.distribute.get_strategy()
    )
    assert np.isfinite(record["test"]["loss"])


def test_fit_reads_the_sample_weights(tmp_path):
    # Every height weighs 0: its training loss is 0, its validation loss is not.
    path = tmp_path / "rows.csv"
    rows = [f"{i}, {'abc'[i % 3]}, {150 + i}, 0" for i in range(40)]
    path.write_text("x, letter, height, w\n" + "\n".join(rows) + "\n")
    config = regression_config(
        path,
        "data.validation_fraction=0.2",
        "train.batch_size=8",
        "tasks.1.sample_weight_column=w",
    )
    datasets = keras_mtl.load_datasets(config)
    keras.utils.set_random_seed(0)
    model = keras_mtl.build_model(config, datasets.features)
    history = model.fit(
        datasets.train,
        validation_data=datasets.validation,
        epochs=1,
        verbose=0,
        shuffle=False,
    ).history
    assert history["height_loss"][0] == 0.0 and history["val_height_loss"][0] > 0
    assert history["letter_loss"][0] > 0
