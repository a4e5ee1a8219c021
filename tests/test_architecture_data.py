"""The embedded `mmoe_synthetic` and `funnel` builders: the papers'
constructions, deterministic per seed, loaded through the TFDS source."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

import keras_mtl
from keras_mtl.data.funnel import generate as funnel
from keras_mtl.data.synthetic import generate as synthetic


@pytest.mark.parametrize("correlation", [1.0, 0.9, 0.5, 0.0])
def test_task_weights_have_the_chosen_cosine(correlation):
    w1, w2 = synthetic.task_weights(correlation, seed=3)
    assert np.linalg.norm(w1) == pytest.approx(1.0)
    assert np.linalg.norm(w2) == pytest.approx(1.0)
    assert w1 @ w2 == pytest.approx(correlation, abs=1e-9)


def test_synthetic_rows_are_the_papers_formula():
    x, y1, _ = synthetic.generate(0.5, 50, seed=2, split_index=0)
    w1, _ = synthetic.task_weights(0.5, 2)
    alpha, beta = synthetic.sine_parameters(2)
    clean = x @ w1 + np.sin(np.outer(x @ w1, alpha) + beta).sum(axis=1)
    residual = y1 - clean
    assert np.std(residual) == pytest.approx(synthetic.NOISE_STD, rel=0.3)


def test_label_correlation_falls_with_the_weights_correlation():
    def label_correlation(p):
        _, y1, y2 = synthetic.generate(p, 5000, seed=0, split_index=0)
        return np.corrcoef(y1, y2)[0, 1]

    assert label_correlation(1.0) > label_correlation(0.9) > label_correlation(0.5)


@pytest.mark.parametrize("module", ["synthetic", "funnel"])
def test_generators_are_deterministic_per_seed(module):
    def rows(seed, split_index=0):
        if module == "synthetic":
            return synthetic.generate(0.9, 20, seed, split_index)
        return tuple(funnel.generate(20, seed, split_index).values())

    for a, b in zip(rows(1), rows(1), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(rows(1)[0], rows(2)[0])
    assert not np.array_equal(rows(1)[0], rows(1, split_index=1)[0])


def test_funnel_observes_conversions_only_after_clicks():
    rows = funnel.generate(20_000, seed=0, split_index=0)
    click, conversion = rows["click"], rows["conversion"]
    assert 0.1 < click.mean() < 0.3
    assert np.all(conversion <= click)
    np.testing.assert_array_equal(conversion, click * rows["conversion_if_clicked"])
    labels = rows["conversion_given_click_label"]
    np.testing.assert_array_equal(labels[click == 1], conversion[click == 1])
    assert np.all(labels[click == 0] == -1)
    # Selection bias: clicked rows convert less often than all rows would.
    cvr = rows["true_cvr"]
    assert cvr[click == 1].mean() < cvr.mean() - 0.05
    # The stored truth is the rate of the counterfactual outcome.
    assert rows["conversion_if_clicked"].mean() == pytest.approx(cvr.mean(), abs=0.01)


@pytest.mark.parametrize("name", ["mmoe_synthetic/tiny", "funnel/tiny"])
def test_builders_build_the_same_rows_twice(name, tmp_path):
    def first_rows(data_dir):
        builder = tfds.builder(name, data_dir=str(data_dir))
        builder.download_and_prepare()
        dataset = builder.as_dataset(split="train[:32]", shuffle_files=False)
        return [example["features"] for example in tfds.as_numpy(dataset)]

    a, b = first_rows(tmp_path / "a"), first_rows(tmp_path / "b")
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


def test_funnel_loads_as_a_vector_input_and_two_binary_labels(tmp_path):
    config = keras_mtl.load_config(
        "funnel_esmm",
        [
            "data.dataset=funnel/tiny",
            f"data.data_dir={tmp_path}",
            "train.batch_size=64",
        ],
    )
    datasets = keras_mtl.load_datasets(config)
    (feature,) = datasets.features
    assert type(feature).__name__ == "VectorFeature"
    assert feature.shape == (funnel.DIMENSION,)
    inputs, labels = next(iter(datasets.train))
    assert inputs["features"].shape == (64, funnel.DIMENSION)
    assert sorted(labels) == ["click", "conversion"]
    assert np.all(labels["conversion"].numpy() <= labels["click"].numpy())
