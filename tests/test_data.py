"""Data sources: the embedded shapes builder, TFDS (mocked), CSV files."""

import time

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import keras_mtl
from keras_mtl.data import CategoricalFeature, NumericFeature, tfds_source
from keras_mtl.data.csv_source import load_csv
from keras_mtl.data.shapes import render


def test_render_is_deterministic_and_fine_fixes_coarse():
    image, fine, coarse = render.render(7, seed=3)
    again, fine_again, _ = render.render(7, seed=3)
    np.testing.assert_array_equal(image, again)
    assert fine == fine_again
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert render.COARSE_NAMES[coarse] in render.TAXONOMY
    assert render.FINE_NAMES[fine] in render.TAXONOMY[render.COARSE_NAMES[coarse]]
    other, _, _ = render.render(8, seed=3)
    assert not np.array_equal(image, other)


def test_render_covers_every_class_with_varied_images():
    samples = [render.render(i) for i in range(600)]
    counts = np.bincount([fine for _, fine, _ in samples], minlength=12)
    assert counts.min() > 25, counts  # about 50 each
    stds = [image.std() for image, _, _ in samples]
    assert min(stds) > 5  # no blank images


def test_shapes_tiny_loads_through_tfds(shapes_data_dir):
    builder = tfds.builder("shapes/tiny", data_dir=str(shapes_data_dir))
    assert builder.info.splits["train"].num_examples == 512
    assert builder.info.features["label"].names == list(render.FINE_NAMES)
    example = next(iter(builder.as_dataset(split="test")))
    fine, coarse = int(example["label"]), int(example["coarse_label"])
    assert render.FINE_TO_COARSE[fine] == coarse


def test_pipeline_batches_splits_and_drops_remainder(tiny_config):
    datasets = keras_mtl.load_datasets(tiny_config)
    assert datasets.sizes == {"train": 461, "validation": 51, "test": 256}
    assert datasets.class_names["coarse"] == list(render.COARSE_NAMES)
    train_batches = list(datasets.train)
    assert len(train_batches) == 461 // 64  # remainder dropped
    inputs, labels = train_batches[0]
    assert (
        inputs["image"].shape == (64, 32, 32, 3) and inputs["image"].dtype == tf.float32
    )
    assert labels["coarse"].dtype == tf.int32 and labels["fine"].shape == (64,)
    assert sum(int(batch[1]["fine"].shape[0]) for batch in datasets.validation) == 51


def test_max_examples_caps_training(tiny_config):
    config = tiny_config.replace(["data.max_examples=128"])
    assert keras_mtl.load_datasets(config).sizes["train"] == 128
    with pytest.raises(ValueError, match="fewer than one batch"):
        keras_mtl.load_datasets(config.replace(["data.max_examples=10"]))


def test_two_replicas_drop_uneven_evaluation_batches(tiny_config):
    datasets = keras_mtl.load_datasets(tiny_config, replicas=2)
    sizes = [int(batch[1]["fine"].shape[0]) for batch in datasets.test]
    assert sizes == [64] * 4  # 256 test examples, all batches even
    with pytest.raises(ValueError, match="divisible by the number of replicas"):
        keras_mtl.load_datasets(
            tiny_config.replace(["train.batch_size=63"]), replicas=2
        )


def test_cifar100_through_mock_tfds(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    config = keras_mtl.load_config(
        "cifar100", [f"data.data_dir={tmp_path}", "train.batch_size=8"]
    )
    with tfds.testing.mock_data(num_examples=40):
        datasets = keras_mtl.load_datasets(config)
        inputs, labels = next(iter(datasets.train))
    assert inputs["image"].shape == (8, 32, 32, 3)
    assert (
        0 <= int(tf.reduce_min(labels["coarse"]))
        and int(tf.reduce_max(labels["coarse"])) < 20
    )
    assert int(tf.reduce_max(labels["fine"])) < 100
    assert len(datasets.class_names["fine"]) == 100
    assert len(datasets.class_names["coarse"]) == 20


def test_unprepared_tfds_dataset_fails_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "_PROBE_HOST", ("127.0.0.1", 9))  # nothing listens
    config = keras_mtl.load_config("cifar100", [f"data.data_dir={tmp_path}"])
    start = time.monotonic()
    with pytest.raises(
        ValueError, match="not prepared .* network is unreachable.*tfds build"
    ):
        keras_mtl.load_datasets(config)
    assert time.monotonic() - start < 10
    with pytest.raises(ValueError, match="data.download is false"):
        keras_mtl.load_datasets(config.replace(["data.download=false"]))


def test_tfds_feature_names_are_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_source, "network_available", lambda timeout=3.0: True)
    config = keras_mtl.load_config(
        "cifar100", [f"data.data_dir={tmp_path}", "tasks.0.label=superclass"]
    )
    with (
        tfds.testing.mock_data(num_examples=8),
        pytest.raises(
            ValueError,
            match="tasks.0.label='superclass' is not a feature.*coarse_label",
        ),
    ):
        keras_mtl.load_datasets(config)


CSV_TEXT = """age, city, height, label, flag, secret
30, Paris, 1.8, a, yes, 1
41, ?, 1.6, b, no, 2
25,  Rome, ?, a, yes, 3

33, Paris, 1.7, c, no, 4
52, Oslo, 1.9, b, ?, 5
47, Paris, 1.75, a, no, 6
38, Rome, 1.65, c, yes, 7
29, Oslo, 1.85, b, no, 8
"""


def csv_config(path, *overrides):
    return keras_mtl.load_config(
        "adult",
        [
            f"data.path={path}",
            "data.exclude_columns=['secret']",
            "data.test_fraction=0.0",
            "data.validation_fraction=0.0",
            "tasks.0.name=letter",
            "tasks.0.label=label",
            "tasks.0.num_classes=3",
            "tasks.1.name=flagged",
            "tasks.1.label=flag",
            "tasks.1.positive=yes",
            *overrides,
        ],
    )


def test_csv_handles_spaces_missing_values_and_types(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text(CSV_TEXT)
    config = csv_config(path, "data.missing_labels=drop")
    splits, features, class_names, sizes = load_csv(config)
    assert sizes["train"] == 7  # the row with a missing 'flag' label is dropped
    by_name = {feature.name: feature for feature in features}
    assert sorted(by_name) == ["age", "city", "height"]  # labels and 'secret' excluded
    assert isinstance(by_name["age"], NumericFeature)
    assert isinstance(by_name["city"], CategoricalFeature)
    # By training count (the row without a flag label is gone), without '?'.
    assert by_name["city"].vocabulary == ("Paris", "Rome", "Oslo")
    heights = [1.8, 1.6, 1.7, 1.75, 1.65, 1.85]  # without the missing one
    assert by_name["height"].mean == pytest.approx(np.mean(heights), rel=1e-5)
    assert class_names == {"letter": ["a", "b", "c"], "flagged": ["no", "yes"]}
    rows = list(splits["train"].as_numpy_iterator())
    values = {row[0]["city"].decode() for row in rows}
    assert "Rome" in values and "?" in values  # raw values: the model cleans them
    assert any(np.isnan(row[0]["height"]) for row in rows)
    flags = sorted(float(row[1]["flagged"][0]) for row in rows)
    assert flags == [0.0] * 4 + [1.0] * 3


def test_non_finite_numbers_count_as_missing(tmp_path, caplog):
    path = tmp_path / "small.csv"
    path.write_text(CSV_TEXT.replace("1.6, b", "inf, b").replace("1.85, b", "-inf, b"))
    config = csv_config(path, "data.missing_labels=drop")
    with caplog.at_level("WARNING", logger="keras_mtl"):
        splits, features, _, _ = load_csv(config)
    (height,) = [feature for feature in features if feature.name == "height"]
    # The two infinities and the '?' are missing; a row without a flag is dropped.
    expected = [1.8, 1.7, 1.75, 1.65]
    assert height.mean == pytest.approx(np.mean(expected), rel=1e-5)
    assert np.isfinite(height.variance)
    assert "'height' has 2 non-finite values" in caplog.text
    heights = [row[0]["height"] for row in splits["train"].as_numpy_iterator()]
    assert not np.isinf(heights).any() and np.isnan(heights).sum() == 3


def test_csv_errors_name_the_problem(tmp_path):
    path = tmp_path / "small.csv"
    path.write_text(CSV_TEXT)
    with pytest.raises(
        ValueError, match="num_classes=4 but column 'label'.*has 3 classes"
    ):
        load_csv(csv_config(path, "tasks.0.num_classes=4"))
    with pytest.raises(
        ValueError, match="positive='maybe' does not occur in column 'flag'"
    ):
        load_csv(csv_config(path, "tasks.1.positive=maybe"))
    with pytest.raises(ValueError, match="column 'nope' is not in"):
        load_csv(csv_config(path, "data.exclude_columns=['nope']"))
    with pytest.raises(ValueError, match="CSV file not found"):
        load_csv(csv_config(tmp_path / "absent.csv"))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a, b\n1, 2\n3\n")
    with pytest.raises(ValueError, match="line 3: expected 2 fields"):
        load_csv(csv_config(ragged))


def test_a_csv_with_a_byte_order_mark_and_crlf_lines_reads_as_any(tmp_path):
    path = tmp_path / "excel.csv"  # Excel's "CSV UTF-8" on Windows
    path.write_bytes(("\ufeff" + CSV_TEXT).replace("\n", "\r\n").encode("utf-8"))
    splits, features, class_names, sizes = load_csv(
        csv_config(path, "data.missing_labels=drop")
    )
    assert [feature.name for feature in features] == ["age", "city", "height"]
    assert sizes["train"] == 7
    assert class_names["letter"] == ["a", "b", "c"]
    cities = {row[0]["city"].decode() for row in splits["train"].as_numpy_iterator()}
    assert "Paris" in cities and not any(city.endswith("\r") for city in cities)


def test_a_csv_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(CSV_TEXT.replace("Rome", "Zürich").encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv, line 4: .* must be UTF-8"):
        load_csv(csv_config(path))


def test_real_adult_file(adult_csv):
    config = keras_mtl.load_config("adult", [f"data.path={adult_csv}"])
    splits, features, class_names, sizes = load_csv(config)
    assert sum(sizes.values()) == 32561
    assert len(class_names["marital_status"]) == 7
    assert class_names["income"] == ["<=50K", ">50K"]
    names = {feature.name for feature in features}
    assert not names & {"relationship", "fnlwgt", "marital-status", "Salary"}
    workclass = next(f for f in features if f.name == "workclass")
    assert "?" not in workclass.vocabulary and "Private" in workclass.vocabulary
    labels = np.concatenate(
        [y["income"] for _, y in splits["train"].batch(4096).as_numpy_iterator()]
    )
    assert 0.2 < labels.mean() < 0.28  # 24% earn more than 50K


def test_shuffle_order_depends_on_the_config_only(tiny_config):
    def first_labels(config, global_seed):
        keras.utils.set_random_seed(global_seed)  # whatever ran before
        inputs, labels = next(iter(keras_mtl.load_datasets(config).train))
        return labels["fine"].numpy().tolist()

    assert first_labels(tiny_config, 123) == first_labels(tiny_config, 7)
    other = tiny_config.replace(["train.seed=5"])
    assert first_labels(other, 123) != first_labels(tiny_config, 123)


def _example_keys(dataset):
    """One key per example of each batch: its image's bytes."""
    return [
        image.tobytes() for inputs, _ in dataset for image in inputs["image"].numpy()
    ]


@pytest.mark.parametrize("cache", ["true", "false"])
def test_every_training_epoch_is_a_new_permutation(tiny_config, cache):
    # 448 = 7 batches of 64: no remainder, so every epoch holds every example.
    config = tiny_config.replace([f"data.cache={cache}", "data.max_examples=448"])
    train = keras_mtl.load_datasets(config).train
    first, second = _example_keys(train), _example_keys(train)
    unshuffled = keras_mtl.load_datasets(config.replace(["train.shuffle=false"]))
    in_order = _example_keys(unshuffled.train)
    assert len(set(in_order)) == 448
    for epoch in (first, second):
        assert len(epoch) == 448 and set(epoch) == set(in_order)
    assert first != in_order and second != in_order and first != second
    # One iterator for all epochs, as keras_mtl.train fits: the same epochs.
    endless, steps = keras_mtl.data.repeat_epochs(keras_mtl.load_datasets(config).train)
    assert steps == 7
    assert int(endless.cardinality()) == tf.data.INFINITE_CARDINALITY
    assert _example_keys(endless.take(2 * steps)) == first + second


def test_a_dataset_of_unknown_length_is_not_repeated():
    dataset = tf.data.Dataset.range(10).filter(lambda x: x < 5).batch(2)
    assert keras_mtl.data.repeat_epochs(dataset) == (dataset, None)
