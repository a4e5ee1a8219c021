"""The balancing methods `db_mtl`, `imtl`, `stch` and `aligned_mtl`: their math
on hand-computed two-task cases (conflicting and aligned gradients), mixed
precision, missing labels, `stop_gradient`, saving and replicas. Their 1-vs-2
replica runs with complete and half-missing labels are the parametrized
`METHODS` tests of test_weighting.py and test_masked_labels.py."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl.weighting import METHODS
from keras_mtl.weighting.aligned_mtl import aligned_mtl_alphas, aligned_mtl_balance
from keras_mtl.weighting.db_mtl import db_mtl_average, db_mtl_combine
from keras_mtl.weighting.imtl import imtl_alphas, imtl_scale_gradient
from keras_mtl.weighting.stch import stch_objective, stch_weights

from weighting_helpers import TASKS, batches, build, toy_data

BALANCING = ("db_mtl", "imtl", "stch", "aligned_mtl")
GRADIENT_METHODS = ("db_mtl", "imtl", "aligned_mtl")


def dataset(examples=64, missing=False, seed=0):
    """Unshuffled batches of 16; with `missing`, half the labels are -1 / NaN
    and the first batch has no income label at all."""
    return batches(toy_data(examples, seed, missing=missing, no_income_rows=16))


def unit(vector):
    return vector / np.linalg.norm(vector)


# DB-MTL ------------------------------------------------------------------------


def test_db_mtl_scales_every_task_to_the_largest_norm():
    # Conflicting directions, norms 3 and 1: both enter with norm 3.
    combined, factors = db_mtl_combine(tf.constant([[3.0, 0.0], [0.0, -1.0]]))
    np.testing.assert_allclose(combined, [3.0, -3.0], rtol=1e-6)
    np.testing.assert_allclose(factors, [1.0, 3.0], rtol=1e-6)
    # Aligned, norms 2 and 1: 2 + 2.
    combined, factors = db_mtl_combine(tf.constant([[2.0, 0.0], [1.0, 0.0]]))
    np.testing.assert_allclose(combined, [4.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(factors, [1.0, 2.0], rtol=1e-6)


def test_db_mtl_average_decays_beta_with_the_step():
    averages, gradients = tf.fill([2, 1], 2.0), tf.ones([2, 1])
    # beta_1 = 0.9: h = 0.1 g + 0.9 h;  beta_4 = 0.9 / 4 ** 0.5 = 0.45.
    np.testing.assert_allclose(
        db_mtl_average(averages, gradients, 0.9, 0.5, 1.0), [[1.9], [1.9]], 1e-6
    )
    np.testing.assert_allclose(
        db_mtl_average(averages, gradients, 0.9, 0.5, 4.0), [[1.45], [1.45]], 1e-6
    )
    # beta_sigma = 0: a fixed beta.
    np.testing.assert_allclose(
        db_mtl_average(averages, gradients, 0.9, 0.0, 4.0), [[1.9], [1.9]], 1e-6
    )


# IMTL ----------------------------------------------------------------------------


def imtl_closed_form(g1, g2):
    """The paper's `alpha_2 = g1 U^T (D U^T)^-1` with `U = u1 - u2, D = g1 - g2`."""
    u = unit(g1) - unit(g2)
    alpha2 = g1 @ u / ((g1 - g2) @ u)
    return np.array([1.0 - alpha2, alpha2])


@pytest.mark.parametrize(
    "g1, g2",
    [
        ([1.0, 0.0], [-1.0, 1.0]),  # conflicting
        ([2.0, 0.0], [1.0, 1.0]),  # agreeing, not parallel
        ([0.3, -1.2, 2.0], [-2.5, 0.4, 0.1]),
    ],
)
def test_imtl_projects_equally_and_matches_the_closed_form(g1, g2):
    g1, g2 = np.array(g1), np.array(g2)
    alphas = imtl_alphas(tf.constant(g1, "float32"), tf.constant(g2, "float32"))
    alphas = np.asarray(alphas, "float64")
    np.testing.assert_allclose(alphas, imtl_closed_form(g1, g2), rtol=1e-5)
    update = alphas[0] * g1 + alphas[1] * g2
    assert update @ unit(g1) == pytest.approx(update @ unit(g2), rel=1e-5)
    assert float(np.sum(alphas)) == pytest.approx(1.0)


def test_imtl_by_hand_for_conflicting_aligned_and_missing_gradients():
    # [1, 0] and [-1, 1]: alpha = [sqrt 2, 1] / (1 + sqrt 2).
    root = math.sqrt(2.0)
    alphas = imtl_alphas(tf.constant([1.0, 0.0]), tf.constant([-1.0, 1.0]))
    np.testing.assert_allclose(alphas, [root / (1 + root), 1 / (1 + root)], 1e-6)
    # Parallel [2, 0] and [1, 0] (the closed form's 0 / 0): [1/3, 2/3], g = [4/3, 0].
    alphas = imtl_alphas(tf.constant([2.0, 0.0]), tf.constant([1.0, 0.0]))
    np.testing.assert_allclose(alphas, [1 / 3, 2 / 3], rtol=1e-6)
    # A task without gradient: the other one's gradient as it is.
    alphas = imtl_alphas(tf.constant([2.0, 0.0]), tf.zeros(2))
    np.testing.assert_array_equal(alphas, [1.0, 1.0])
    assert np.all(np.isfinite(imtl_alphas(tf.zeros(2), tf.zeros(2))))


def test_imtl_l_scale_gradient_by_hand():
    # d/ds (exp(s) L - s) = exp(s) L - 1.
    gradient = imtl_scale_gradient(tf.constant([0.0, math.log(2.0)]), [2.0, 0.25])
    np.testing.assert_allclose(gradient, [1.0, -0.5], rtol=1e-6)


# Aligned-MTL ---------------------------------------------------------------------


def test_aligned_mtl_by_hand_for_orthogonal_gradients():
    # Norms 3 and 1: M = diag(9, 1), B = 1 * diag(1/3, 1), g = [1, 1].
    balance = aligned_mtl_balance(tf.constant([[9.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_allclose(balance, [[1 / 3, 0.0], [0.0, 1.0]], atol=1e-6)
    alphas = aligned_mtl_alphas(
        tf.constant([3.0, 0.0]), tf.constant([0.0, 1.0]), [1.0, 1.0]
    )
    np.testing.assert_allclose(alphas, [1 / 3, 1.0], rtol=1e-6)


def test_aligned_mtl_makes_conflicting_gradients_orthonormal_at_sigma_min():
    g = np.array([[1.0, 0.0], [-1.0, 1.0]])  # rows: the task gradients
    gram = g @ g.T
    balance = np.asarray(aligned_mtl_balance(tf.constant(gram, "float32")))
    smallest = np.linalg.eigvalsh(gram).min()
    # (G B)^T (G B) = lambda_min I: condition number 1, norms sigma_min.
    np.testing.assert_allclose(
        balance.T @ gram @ balance, smallest * np.eye(2), atol=1e-6
    )
    alphas = aligned_mtl_alphas(*tf.constant(g, "float32"), tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(alphas, balance @ [1.0, 1.0], rtol=1e-5)


def test_aligned_mtl_drops_the_null_direction_of_parallel_or_missing_gradients():
    # [2, 0] and [1, 0]: rank 1, B = v v^T with v = [2, 1] / sqrt 5, g = g1 + g2.
    alphas = aligned_mtl_alphas(
        tf.constant([2.0, 0.0]), tf.constant([1.0, 0.0]), [1.0, 1.0]
    )
    np.testing.assert_allclose(alphas, [6 / 5, 3 / 5], rtol=1e-5)
    alphas = aligned_mtl_alphas(tf.constant([2.0, 0.0]), tf.zeros(2), [1.0, 1.0])
    np.testing.assert_allclose(alphas, [1.0, 0.0], atol=1e-6)
    alphas = aligned_mtl_alphas(tf.zeros(2), tf.zeros(2), [1.0, 1.0])
    np.testing.assert_array_equal(alphas, [0.0, 0.0])


# STCH ----------------------------------------------------------------------------


def test_stch_weights_are_the_objectives_gradient():
    losses = tf.constant([0.8, 1.7])
    ideal, preferences = tf.constant([1.0, 1.2]), tf.constant([1.0, 0.5])
    with tf.GradientTape() as tape:
        tape.watch(losses)
        objective = stch_objective(losses, ideal, preferences, 0.3)
    expected = tape.gradient(objective, losses)
    np.testing.assert_allclose(
        stch_weights(losses, ideal, preferences, 0.3), expected, rtol=1e-5
    )


def test_stch_by_hand_from_the_mean_to_the_max():
    # L = [1, e], n = [1, 1], mu = 1: p = [1, e] / (1 + e), v = 2 p / L.
    e = math.e
    weights = stch_weights(tf.constant([1.0, e]), tf.ones(2), tf.ones(2), 1.0)
    np.testing.assert_allclose(weights, [2 / (1 + e), 2 / (1 + e)], rtol=1e-5)
    # A small mu: all weight on the task farthest above its ideal point.
    weights = stch_weights(tf.constant([1.0, 2.0]), tf.ones(2), tf.ones(2), 0.01)
    np.testing.assert_allclose(weights, [0.0, 1.0], atol=1e-6)


def test_stch_warms_up_then_uses_the_last_warmup_epochs_mean_losses():
    model = build("stch")  # warmup_epochs = 1
    history = model.fit(dataset(), epochs=2, verbose=0).history
    weighting = model.weighting
    assert float(weighting.epochs_seen.numpy()) == 2.0
    assert float(weighting.loss_count.numpy()) == 4.0  # the first epoch's steps
    ideal = np.asarray(weighting.ideal_losses())
    first_epoch = [history[f"{task}_loss"][0] for task in TASKS]
    np.testing.assert_allclose(ideal, first_epoch, rtol=1e-5)


# Training ------------------------------------------------------------------------


@pytest.mark.parametrize("method", BALANCING)
def test_a_mixed_precision_step_has_finite_losses(method):
    model = build(method, extra=["train.mixed_precision=true"])
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    before = [np.array(w) for w in model.get_layer("trunk").get_weights()]
    history = model.fit(dataset(32), epochs=1, verbose=0).history
    for key in ["loss"] + [f"{t}_{k}" for t in TASKS for k in ("loss", "weight")]:
        assert np.all(np.isfinite(history[key])), key
    after = model.get_layer("trunk").get_weights()
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))
    assert all(np.all(np.isfinite(np.asarray(v))) for v in model.weighting.variables)


@pytest.mark.parametrize("method", BALANCING)
def test_missing_labels_train_finite_and_an_unlabelled_head_stays(method):
    model = build(method)
    head2 = [np.array(w) for w in model.get_layer("head2").get_weights()]
    first = model.fit(dataset(16, missing=True), epochs=1, verbose=0).history
    assert first["income_loss"] == [0.0]  # no income label in the batch
    for before, after in zip(
        head2, model.get_layer("head2").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(before, after)
    history = model.fit(dataset(missing=True), epochs=2, verbose=0).history
    for key in ["loss"] + [f"{t}_{k}" for t in TASKS for k in ("loss", "weight")]:
        assert np.all(np.isfinite(history[key])), key


def test_stop_gradient_is_refused_by_the_gradient_methods_only():
    extra = ["model.stop_gradient=true"]
    for method in GRADIENT_METHODS:
        with pytest.raises(ValueError, match="stop_gradient"):
            build(method, extra=extra)
    history = build("stch", extra=extra).fit(dataset(32), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize(
    "method, extra",
    [("db_mtl", ()), ("imtl", ("weighting.imtl_loss_scaling=true",)), ("stch", ())],
)
def test_keras_file_keeps_the_state_and_training_continues(method, extra, tmp_path):
    model = build(method, extra=extra)
    model.fit(dataset(), epochs=2, verbose=0)
    assert model.weighting.state_variables()
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.weighting.get_config() == model.weighting.get_config()
    for saved, restored in zip(
        model.weighting.variables, loaded.weighting.variables, strict=True
    ):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(restored))
    history = loaded.fit(dataset(), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_imtl_l_gives_the_same_scales_on_one_and_two_replicas():
    runs = []
    for replicas in (1, 2):
        model = build("imtl", replicas, extra=["weighting.imtl_loss_scaling=true"])
        history = model.fit(dataset(), epochs=2, verbose=0).history
        runs.append((model, history))
    (model1, history1), (model2, history2) = runs
    for key in ["loss"] + [f"{t}_{k}" for t in TASKS for k in ("loss", "weight")]:
        np.testing.assert_allclose(history1[key], history2[key], rtol=1e-4, atol=1e-6)
    scales = np.asarray(model1.weighting.log_scales)
    assert np.ptp(scales) > 1e-4  # the scales moved apart
    np.testing.assert_allclose(
        scales, np.asarray(model2.weighting.log_scales), atol=1e-5
    )
    for w1, w2 in zip(model1.get_weights(), model2.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w2, atol=1e-5)


def test_the_methods_are_registered_with_their_keys():
    config = keras_mtl.load_config(
        "shapes",
        [
            "weighting.method=db_mtl",
            "weighting.db_mtl_beta=0.5",
            "weighting.stch_mu=0.2",
        ],
    )
    assert config.weighting.db_mtl_beta == 0.5 and config.weighting.stch_mu == 0.2
    assert set(BALANCING) <= set(METHODS)
    with pytest.raises(ValueError, match="db_mtl_beta"):
        keras_mtl.load_config("shapes", ["weighting.db_mtl_beta=1.0"])
    with pytest.raises(ValueError, match="stch_warmup_epochs"):
        keras_mtl.load_config("shapes", ["weighting.stch_warmup_epochs=0"])
