"""Missing labels: each task's loss and metrics over the rows that carry its
label, by hand; a step without any label of a task. (The same training on 1
and 2 replicas with half the labels missing, for every weighting method, is
tests/test_weighting.py's replica test.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import tasks
from keras_mtl.config import TaskConfig
from keras_mtl.data.features import TargetScale

from weighting_helpers import FEATURES, batches, build, masked_data, tiny_config

MULTICLASS = TaskConfig(name="a", kind="multiclass", num_classes=3)
BINARY = TaskConfig(name="b", kind="binary")
REGRESSION = TaskConfig(name="r", kind="regression")
PROBABILITIES = np.array(
    [[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]], "float32"
)


# The losses and metrics, by hand ---------------------------------------------


def test_multiclass_loss_is_the_mean_over_labelled_rows():
    labels = np.array([0, tasks.MISSING_LABEL, 2, -1])
    loss = tasks.make_loss(MULTICLASS)(labels, PROBABILITIES)
    np.testing.assert_allclose(float(loss), -(np.log(0.7) + np.log(0.8)) / 2, 1e-6)


def test_sample_weights_scale_rows_and_the_count_stays_the_labelled_rows():
    labels = np.array([0, -1, 2, 1])
    weights = np.array([2.0, 5.0, 1.0, 0.5])
    loss = tasks.make_loss(MULTICLASS)(labels, PROBABILITIES, weights)
    expected = -(2 * np.log(0.7) + np.log(0.8) + 0.5 * np.log(0.5)) / 3
    np.testing.assert_allclose(float(loss), expected, 1e-6)


def test_binary_loss_skips_negative_and_nan_labels():
    labels = np.array([[1.0], [np.nan], [0.0], [1.0], [-1.0]], "float32")
    predictions = np.array([[0.9], [0.5], [0.2], [0.4], [0.6]], "float32")
    loss = tasks.make_loss(BINARY)(labels, predictions)
    expected = -(np.log(0.9) + np.log(0.8) + np.log(0.4)) / 3
    np.testing.assert_allclose(float(loss), expected, 1e-6)


def test_regression_loss_skips_nan_and_is_standardised_by_the_scale():
    labels = np.array([1.0, np.nan, 3.0, -2.0], "float32")
    predictions = np.array([[2.0], [0.0], [5.0], [-2.0]], "float32")
    loss = tasks.make_loss(REGRESSION, scale=2.0)(labels, predictions)
    np.testing.assert_allclose(float(loss), (1 + 4 + 0) / 3 / 4, 1e-6)


@pytest.mark.parametrize("task", [MULTICLASS, BINARY, REGRESSION], ids=str)
def test_a_batch_without_labels_gives_zero_and_no_nan(task):
    missing = np.full(4, np.nan if task.kind != "multiclass" else -1, "float32")
    predictions = PROBABILITIES if task.kind == "multiclass" else PROBABILITIES[:, :1]
    variable = tf.Variable(predictions)
    with tf.GradientTape() as tape:
        loss = tasks.make_loss(task)(missing, variable)
    assert float(loss) == 0.0
    gradient = tape.gradient(loss, variable)
    np.testing.assert_array_equal(gradient.numpy(), 0.0)


def test_metrics_count_only_labelled_rows():
    (accuracy,) = tasks.make_metrics(MULTICLASS)
    accuracy.update_state(np.array([0, -1, 2, 0]), PROBABILITIES)
    assert float(accuracy.result()) == pytest.approx(2 / 3)
    auc, binary_accuracy = tasks.make_metrics(BINARY)
    labels = np.array([[1.0], [np.nan], [0.0], [1.0]], "float32")
    predictions = np.array([[0.9], [0.1], [0.2], [0.4]], "float32")
    for metric in (auc, binary_accuracy):
        metric.update_state(labels, predictions)
    assert float(auc.result()) == pytest.approx(1.0)
    assert float(binary_accuracy.result()) == pytest.approx(2 / 3)
    mae, rmse = tasks.make_metrics(REGRESSION)
    labels = np.array([1.0, np.nan, 3.0], "float32")
    predictions = np.array([[2.0], [100.0], [5.0]], "float32")
    for metric in (mae, rmse):
        metric.update_state(labels, predictions)
    assert float(mae.result()) == pytest.approx(1.5)
    assert float(rmse.result()) == pytest.approx(np.sqrt(2.5))


def test_the_masked_loss_round_trips_through_its_config():
    loss = tasks.make_loss(REGRESSION, scale=3.5)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert (again.kind, again.scale, again.name) == ("regression", 3.5, "r_loss")


# In a model -------------------------------------------------------------------


def test_a_task_scores_the_same_on_its_labelled_rows_alone():
    model = build()
    inputs, labels = masked_data()
    masked = model.evaluate(batches((inputs, labels), 64), verbose=0, return_dict=True)
    rows = ~np.isnan(labels["income"][:, 0])
    income_only = (
        {name: values[rows] for name, values in inputs.items()},
        {
            "marital_status": labels["marital_status"][rows],
            "income": labels["income"][rows],
        },
    )
    alone = model.evaluate(
        batches(income_only, int(rows.sum())), verbose=0, return_dict=True
    )
    assert masked["income_loss"] == pytest.approx(alone["income_loss"], rel=1e-5)
    assert masked["income_auc"] == pytest.approx(alone["income_auc"], rel=1e-5)


def test_a_step_without_any_label_of_a_task_leaves_its_head_alone():
    model = build()
    inputs, labels = masked_data(16)
    labels["income"][:] = np.nan
    head2 = [w.copy() for w in model.get_layer("head2").get_weights()]
    trunk = [w.copy() for w in model.get_layer("trunk").get_weights()]
    history = model.fit(batches((inputs, labels)), epochs=1, verbose=0).history
    assert history["income_loss"] == [0.0]
    assert np.isfinite(history["loss"][0])
    for before, after in zip(
        head2, model.get_layer("head2").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(before, after)
    assert any(  # Loss 1 still trained the Trunk.
        not np.array_equal(b, a)
        for b, a in zip(trunk, model.get_layer("trunk").get_weights(), strict=True)
    )


# Regression targets in their units ---------------------------------------------


def test_a_regression_head_predicts_in_the_targets_units():
    config = tiny_config(
        extra=["tasks.income.kind=regression", "tasks.income.positive=''"]
    )
    scale = TargetScale("income", mean=4200.0, std=800.0)
    model = keras_mtl.build_model(config, (*FEATURES, scale))
    assert model.get_layer("income_in_units") is not None
    inputs, _ = masked_data(8)
    standardised = model.get_layer("head2").output[1]
    raw = keras.Model(model.input, standardised)(inputs)
    predicted = model(inputs)["income"]
    np.testing.assert_allclose(predicted, np.asarray(raw) * 800.0 + 4200.0, rtol=1e-5)
    # The compiled loss is the standardised one: an error of one std costs 1.
    loss = model.loss["income"]
    assert loss.scale == 800.0
    labels = np.asarray(predicted)[:, 0] + 800.0
    assert float(loss(labels, predicted)) == pytest.approx(1.0, rel=1e-5)
