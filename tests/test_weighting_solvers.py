"""FairGrad, Nash-MTL and CAGrad: their two-task solvers against the defining
equations on hand-made gradients, and their training steps (update_every,
mixed precision, missing labels, saving, the stop-gradient refusal).

The 1-vs-2-replica tests of every registered method, these included, are in
test_weighting.py and test_masked_labels.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mtl.weighting.cagrad import cagrad_coefficients
from keras_mtl.weighting.fairgrad import fairgrad_weights
from keras_mtl.weighting.nash_mtl import nash_weights

from weighting_helpers import TASKS, batches, build, tiny_config, toy_data

SOLVERS = ("fairgrad", "nash_mtl", "cagrad")
ALPHAS = (0.5, 1.0, 2.0, 5.0)

CONFLICTING = ([1.0, 0.0], [-0.5, 1.0])  # cos = -0.45
ALIGNED = ([1.0, 0.0], [2.0, 0.0])  # the same direction, twice as long
ORTHOGONAL = ([1.0, 0.0], [0.0, 2.0])
GENERAL = ([1.0, 0.3, -0.2], [-1.0, 0.2, 0.5])


def gram(g1, g2):
    matrix = np.array([g1, g2], "float64")
    return tf.constant(matrix @ matrix.T, "float32"), matrix


def residual(matrix, weights, alpha):
    """`G^T G w - w^(-1/alpha)`, relative to the terms' size."""
    gram_matrix = matrix @ matrix.T
    left = gram_matrix @ weights
    return (left - weights ** (-1.0 / alpha)) / np.abs(left).max()


# FairGrad and Nash-MTL: G^T G w = w^(-1/alpha) --------------------------------


@pytest.mark.parametrize("gradients", [CONFLICTING, ALIGNED, ORTHOGONAL, GENERAL])
@pytest.mark.parametrize("alpha", ALPHAS)
def test_fairgrad_weights_solve_their_equations(gradients, alpha):
    tensor, matrix = gram(*gradients)
    weights = fairgrad_weights(tensor, alpha).numpy().astype("float64")
    assert (weights > 0).all()
    np.testing.assert_allclose(residual(matrix, weights, alpha), 0.0, atol=1e-6)


def test_fairgrad_by_hand():
    # Orthogonal: a_i w_i = w_i^(-1/alpha), so w_i = a_i^(-alpha/(alpha+1)).
    weights = fairgrad_weights(gram(*ORTHOGONAL)[0], 2.0).numpy()
    np.testing.assert_allclose(weights, [1.0, 4.0 ** (-2 / 3)], rtol=1e-6)
    # Aligned, g2 = k g1: w2 = k^(-alpha) w1, w1 = (a (1 + k^(1-alpha)))^(-alpha/(alpha+1)).
    weights = fairgrad_weights(gram(*ALIGNED)[0], 2.0).numpy()
    w1 = (1.0 + 2.0**-1.0) ** (-2 / 3)
    np.testing.assert_allclose(weights, [w1, w1 / 4.0], rtol=1e-6)
    # alpha = 1 is Nash-MTL.
    for gradients in (CONFLICTING, ALIGNED, GENERAL):
        tensor = gram(*gradients)[0]
        np.testing.assert_allclose(
            fairgrad_weights(tensor, 1.0), nash_weights(tensor), rtol=1e-6
        )


def test_nash_weights_by_hand_and_the_update_norm():
    # Orthogonal: alpha_i = 1 / |g_i|.
    np.testing.assert_allclose(nash_weights(gram(*ORTHOGONAL)[0]), [1.0, 0.5])
    for gradients in (CONFLICTING, ALIGNED, GENERAL):
        tensor, matrix = gram(*gradients)
        weights = nash_weights(tensor).numpy().astype("float64")
        np.testing.assert_allclose(residual(matrix, weights, 1.0), 0.0, atol=1e-6)
        # alpha_i = 1 / (|g_i| sqrt(1 + cos)), and |G alpha|^2 = K.
        norms = np.linalg.norm(matrix, axis=1)
        cos = matrix[0] @ matrix[1] / norms.prod()
        np.testing.assert_allclose(weights, 1 / (norms * np.sqrt(1 + cos)), rtol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(weights @ matrix), np.sqrt(2), 1e-5)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_degenerate_gradients_give_finite_weights(alpha):
    def solve(g1, g2):
        tensor = gram(g1, g2)[0]
        return (
            nash_weights(tensor) if alpha == 1.0 else fairgrad_weights(tensor, alpha)
        ).numpy()

    # A task without gradient gets weight 0, the other solves its own
    # equation a w = w^(-1/alpha); exactly opposed gradients (no solution)
    # give no update.
    np.testing.assert_allclose(
        solve([2.0, 0.0], [0.0, 0.0]), [4.0 ** (-alpha / (alpha + 1)), 0.0], 1e-6
    )
    np.testing.assert_array_equal(solve([0.0, 0.0], [0.0, 0.0]), [0, 0])
    np.testing.assert_array_equal(solve([1.0, 0.0], [-3.0, 0.0]), [0, 0])
    tiny = solve([1.0, 0.0], [0.0, 1e-10])
    assert np.isfinite(tiny).all() and tiny[1] > tiny[0] > 0


# CAGrad: w on the simplex minimising g_w . g0 + sqrt(phi) |g_w| ---------------


def cagrad_by_search(matrix, c, points=200_001):
    """CAGrad's update `K (g0 + sqrt(phi)/|g_w| g_w) / (1 + c^2)` by grid search."""
    g1, g2 = matrix
    g0 = (g1 + g2) / 2
    shares = np.linspace(0.0, 1.0, points)[:, None]
    combined = shares * g1 + (1 - shares) * g2
    sqrt_phi = c * np.linalg.norm(g0)
    objective = combined @ g0 + sqrt_phi * np.linalg.norm(combined, axis=1)
    best = combined[np.argmin(objective)]
    return 2 * (g0 + sqrt_phi / np.linalg.norm(best) * best) / (1 + c**2)


@pytest.mark.parametrize("gradients", [CONFLICTING, ALIGNED, ORTHOGONAL, GENERAL])
@pytest.mark.parametrize("c", [0.0, 0.4, 0.9])
def test_cagrad_matches_a_grid_search(gradients, c):
    tensor, matrix = gram(*gradients)
    coefficients = cagrad_coefficients(tensor, c).numpy().astype("float64")
    np.testing.assert_allclose(
        coefficients @ matrix, cagrad_by_search(matrix, c), atol=2e-4
    )


def test_cagrad_by_hand():
    # c = 0: the sum of the gradients.
    np.testing.assert_allclose(cagrad_coefficients(gram(*GENERAL)[0], 0.0), [1, 1])
    # Aligned [1, 0] and [2, 0]: F falls with p, p = 1, g_w = g1, lam = 0.6;
    # update = (g1 + g2 + 2 * 0.6 g1) / 1.16.
    np.testing.assert_allclose(
        cagrad_coefficients(gram(*ALIGNED)[0], 0.4), [2.2 / 1.16, 1 / 1.16], 1e-6
    )
    # Conflicting: the update does not increase either loss (g_i . d >= 0).
    tensor, matrix = gram(*CONFLICTING)
    update = cagrad_coefficients(tensor, 0.4).numpy() @ matrix
    assert (matrix @ update >= -1e-6).all()
    for degenerate in ([[1, 0], [-1, 0]], [[0, 0], [0, 0]], [[1, 0], [1, 0]]):
        assert np.isfinite(cagrad_coefficients(gram(*degenerate)[0], 0.4)).all()


# Training ---------------------------------------------------------------------


def dataset(examples=64, batch_size=16, missing=False):
    """Unshuffled batches; with `missing`, half of each task's labels and the
    whole first batch's income labels are missing."""
    return batches(
        toy_data(examples, missing=missing, no_income_rows=batch_size), batch_size
    )


class StepWeights(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([float(logs[f"{task}_weight"]) for task in TASKS])


def test_nash_mtl_reuses_its_weights_between_updates():
    model = build(
        "nash_mtl",
        extra=["weighting.nash_mtl_update_every=2", "train.steps_per_execution=1"],
    )
    steps = StepWeights()  # Sees every step: one step per call.
    model.fit(dataset(), epochs=1, verbose=0, callbacks=[steps])
    weights = np.array(steps.weights)
    np.testing.assert_array_equal(weights[0], weights[1])
    np.testing.assert_array_equal(weights[2], weights[3])
    assert not np.allclose(weights[1], weights[2])
    state = [np.asarray(v) for v in model.weighting.state_variables()]
    np.testing.assert_allclose(state[0], weights[3])  # income's weight is 1.0
    assert state[1] == 0.0  # 4 steps: the next one solves


def test_nash_mtl_update_every_on_two_replicas():
    runs = []
    for replicas in (1, 2):
        model = build("nash_mtl", replicas, ["weighting.nash_mtl_update_every=3"])
        runs.append((model, model.fit(dataset(), epochs=1, verbose=0).history))
    (model1, history1), (model2, history2) = runs
    for key in ["loss"] + [f"{t}_{k}" for t in TASKS for k in ("loss", "weight")]:
        np.testing.assert_allclose(history1[key], history2[key], rtol=1e-4, atol=1e-6)
    for w1, w2 in zip(model1.get_weights(), model2.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w2, atol=1e-5)
    for v1, v2 in zip(
        model1.weighting.variables, model2.weighting.variables, strict=True
    ):
        np.testing.assert_allclose(np.asarray(v1), np.asarray(v2), atol=1e-5)


@pytest.mark.parametrize("method", SOLVERS)
def test_mixed_precision_trains_with_finite_losses(method):
    model = build(method, extra=["train.mixed_precision=true"])
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(dataset(missing=True), epochs=1, verbose=0).history
    for key in ["loss"] + [f"{t}_{k}" for t in TASKS for k in ("loss", "weight")]:
        assert np.isfinite(history[key]).all(), key
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_mixed_precision_solves_with_the_unscaled_gradients():
    # FairGrad's weights scale with the gradients: solving with the loss-scaled
    # ones (x 2^15) would give other weights than float32 training does.
    weights = []
    for extra in ([], ["train.mixed_precision=true"]):
        steps = StepWeights()
        build("fairgrad", extra=extra).fit(
            dataset(32), epochs=1, verbose=0, callbacks=[steps]
        )
        weights.append(steps.weights)
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-2)


@pytest.mark.parametrize("method", SOLVERS)
def test_a_batch_without_a_tasks_labels_leaves_its_head_alone(method):
    model = build(method)
    head2 = [w.copy() for w in model.get_layer("head2").get_weights()]
    history = model.fit(dataset(16, missing=True), epochs=1, verbose=0).history
    assert history["income_loss"] == [0.0] and history["income_weight"][0] >= 0.0
    assert np.isfinite(history["marital_status_weight"][0])
    for before, after in zip(
        head2, model.get_layer("head2").get_weights(), strict=True
    ):
        np.testing.assert_array_equal(before, after)


def test_keras_file_keeps_nash_mtl_alpha_and_step_count(tmp_path):
    model = build("nash_mtl", extra=["weighting.nash_mtl_update_every=3"])
    model.fit(dataset(), epochs=1, verbose=0)
    state = [np.asarray(v) for v in model.weighting.state_variables()]
    assert state[1] == 1.0 and not np.allclose(state[0], 1.0)  # 4 steps of 3
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.weighting.get_config() == model.weighting.get_config()
    assert loaded.weighting.update_every == 3
    for saved, restored in zip(state, loaded.weighting.state_variables(), strict=True):
        np.testing.assert_array_equal(saved, np.asarray(restored))


@pytest.mark.parametrize("method", SOLVERS)
def test_the_methods_refuse_a_cut_head2(method):
    with pytest.raises(ValueError, match="stop_gradient"):
        tiny_config(method, extra=["model.stop_gradient=true"])
