"""Loss weighting: each method's math on hand-computed cases, the same training
on 1 and 2 replicas, saving, resuming, and exports without weighting state."""

import math
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl.weighting import METHODS, weighting_from_config
from keras_mtl.weighting.dwa import DWAWeighting, dwa_weights
from keras_mtl.weighting.famo import (
    FAMOWeighting,
    famo_logit_gradient,
    famo_weights,
)
from keras_mtl.weighting.gradnorm import gradnorm_logit_gradient, gradnorm_weights
from keras_mtl.weighting.pcgrad import project_conflicting
from keras_mtl.weighting.rlw import rlw_weights
from keras_mtl.weighting.uncertainty import UncertaintyWeighting, uncertainty_total

from conftest import InterruptAtEpoch
from weighting_helpers import (
    FEATURES,
    TASKS,
    batches,
    build,
    masked_data,
    tiny_config,
    toy_data,
)

EPOCHS = 3  # DWA's weights first move in epoch 3.
# Evaluation uses the base class's loss for every dynamic method; these cover
# Keras' own (static), a regulariser (uncertainty) and own eval weights (rlw).
VALIDATED = ("static", "uncertainty", "rlw")


def dataset(examples=64, batch_size=16, seed=0):
    return batches(toy_data(examples, seed), batch_size)


_TRAINED = {}


def trained(method, replicas):
    """A model of `method` after EPOCHS unshuffled epochs on `masked_data`
    (half the labels missing, a replica's first batch without income
    labels), and its history."""
    if (method, replicas) not in _TRAINED:
        model = build(method, replicas)
        validation = dataset(seed=1) if method in VALIDATED else None
        history = model.fit(
            batches(masked_data()), epochs=EPOCHS, verbose=0, validation_data=validation
        )
        _TRAINED[method, replicas] = model, history.history
    return _TRAINED[method, replicas]


# The math, by hand ----------------------------------------------------------


def test_uncertainty_total_by_hand_and_never_below_zero():
    total = uncertainty_total(
        tf.constant([2.0, 0.5]), tf.constant([0.0, math.log(2.0)])
    )
    # 0.5 * 2 + log 2  +  0.5 * 0.5 * 0.5 + log 3
    expected = 1.0 + math.log(2.0) + 0.125 + math.log(3.0)
    assert float(total) == pytest.approx(expected, rel=1e-6)
    # Kendall's exp(-s) L + s would reach -100 at s = -50 with L = 0.
    for s in (-50.0, -5.0, 0.0, 5.0, 50.0):
        assert float(uncertainty_total(tf.zeros(2), tf.fill([2], s))) >= 0.0


def test_uncertainty_learns_more_weight_for_the_smaller_loss():
    weighting = UncertaintyWeighting(TASKS, learning_rate=0.1)
    weighting.build_state(None)
    # d total / d s = -0.5 exp(-s) L + sigmoid(s): -0.5 for L = 2, +0.25 for 0.5.
    weighting.update(None, tf.constant([2.0, 0.5]))
    s = weighting.log_variances.numpy()
    np.testing.assert_allclose(s, [0.1, -0.1], rtol=1e-4)  # Adam's first step
    weights = weighting.loss_weights(None, None).numpy()
    np.testing.assert_allclose(weights, 0.5 * np.exp(-s), rtol=1e-6)
    assert weights[1] > 0.5 > weights[0]


def test_dwa_weights_by_hand():
    # r = [0.5, 1.0]; T = 1: 2 * softmax([0.5, 1.0])
    e1, e2 = math.exp(0.5), math.exp(1.0)
    np.testing.assert_allclose(
        dwa_weights([1.0, 1.0], [2.0, 1.0], temperature=1.0),
        [2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)],
        rtol=1e-6,
    )
    e1, e2 = math.exp(0.25), math.exp(0.5)  # T = 2
    np.testing.assert_allclose(
        dwa_weights([1.0, 1.0], [2.0, 1.0]), [2 * e1 / (e1 + e2), 2 * e2 / (e1 + e2)]
    )


def test_dwa_uses_the_last_two_epochs_after_the_second():
    weighting = DWAWeighting(TASKS, temperature=2.0)
    weighting.build_state(None)
    history = [[2.0, 1.0], [1.0, 1.0], [0.9, 0.3]]
    expected = [[1.0, 1.0], dwa_weights(history[1], history[0])]
    expected.append(dwa_weights(history[2], history[1]))
    for losses, weights in zip(history, expected, strict=True):
        weighting.end_epoch(losses)
        np.testing.assert_allclose(weighting.weights.numpy(), weights, rtol=1e-6)
    # Task 1's loss fell less (0.9 vs 0.3 of before): it gets more weight.
    assert weighting.weights.numpy()[0] > 1.0 > weighting.weights.numpy()[1]


def test_pcgrad_projects_two_conflicting_vectors():
    g1, g2 = tf.constant([1.0, 0.0]), tf.constant([-1.0, 1.0])
    p1, p2 = project_conflicting(g1, g2)
    # g1 - (g1.g2)/|g2|^2 g2 = [1, 0] + 0.5 [-1, 1];  g2 - (g1.g2)/|g1|^2 g1
    np.testing.assert_allclose(p1, [0.5, 0.5])
    np.testing.assert_allclose(p2, [0.0, 1.0])
    assert float(tf.reduce_sum(p1 * g2)) == pytest.approx(0.0)
    assert float(tf.reduce_sum(p2 * g1)) == pytest.approx(0.0)
    # Agreeing or zero gradients are left alone (and never NaN).
    agree = project_conflicting(g1, tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(agree[1], [1.0, 1.0])
    zero = project_conflicting(g1, tf.zeros(2))
    np.testing.assert_allclose(zero[0], [1.0, 0.0])


def test_gradnorm_update_moves_weight_to_the_task_that_needs_it():
    # G = [2, 1], equal loss ratios: target 1.5 each; d/dw = [2, -1];
    # through w = 2 softmax(xi) at xi = 0: [1.5, -1.5].
    gradient = gradnorm_logit_gradient(tf.zeros(2), tf.constant([2.0, 1.0]), 1.0, 1.5)
    np.testing.assert_allclose(gradient, [1.5, -1.5], rtol=1e-6)
    # Equal gradients, task 2 trains slower (its loss ratio is higher): the
    # descent direction raises task 2's weight.
    gradient = gradnorm_logit_gradient(
        tf.zeros(2), tf.constant([1.0, 1.0]), tf.constant([0.5, 1.0]), 1.5
    )
    stepped = gradnorm_weights(-0.1 * gradient).numpy()
    assert stepped[1] > 1.0 > stepped[0]
    assert stepped.sum() == pytest.approx(2.0)


def test_famo_weights_and_update_on_a_known_loss_change():
    np.testing.assert_allclose(
        famo_weights(tf.zeros(2), tf.constant([1.0, 3.0])), [0.75, 0.25], rtol=1e-6
    )
    # Task 1's loss halved, task 2's did not: J^T delta = 0.25 log 2 [1, -1].
    gradient = famo_logit_gradient(
        tf.zeros(2), tf.constant([1.0, 1.0]), tf.constant([0.5, 1.0])
    )
    np.testing.assert_allclose(gradient, [0.25 * math.log(2), -0.25 * math.log(2)])
    weighting = FAMOWeighting(TASKS, learning_rate=0.1, gamma=0.0)
    weighting.build_state(None)
    weighting.observe(None, tf.constant([1.0, 1.0]))  # nothing before: no change
    np.testing.assert_allclose(weighting.logits.numpy(), [0.0, 0.0])
    weighting.observe(None, tf.constant([0.5, 1.0]))
    logits = weighting.logits.numpy()
    assert logits[0] < 0.0 < logits[1]  # the slower task gains weight
    weights = weighting.loss_weights(None, tf.constant([1.0, 1.0])).numpy()
    assert weights[1] > 0.5 > weights[0]


def test_rlw_weights_are_a_seeded_softmax():
    first = rlw_weights(7, 3, 2).numpy()
    assert first.sum() == pytest.approx(1.0) and (first > 0).all()
    np.testing.assert_array_equal(first, rlw_weights(7, 3, 2).numpy())
    assert not np.allclose(first, rlw_weights(7, 4, 2).numpy())
    assert not np.allclose(first, rlw_weights(8, 3, 2).numpy())


# Training -------------------------------------------------------------------


def test_static_trains_bit_for_bit_as_plain_keras():
    model = build("static")
    initial = model.get_weights()
    history = model.fit(dataset(), epochs=2, verbose=0).history
    plain = keras.Model(model.input, model.output)  # the same layers
    plain.set_weights(initial)
    keras_mtl.compile_model(plain, tiny_config("static"))
    plain_history = plain.fit(dataset(), epochs=2, verbose=0).history
    for ours, theirs in zip(model.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for key, values in plain_history.items():
        assert history[key] == values, key
    assert history["income_weight"] == [1.0, 1.0]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_one_and_two_replicas_give_the_same_weights_and_losses(method):
    """With half the labels missing, and a replica whose first batch holds
    no label of a task (its loss and gradients zero, never NaN)."""
    model1, history1 = trained(method, 1)
    model2, history2 = trained(method, 2)
    assert model2.distribute_strategy.num_replicas_in_sync == 2
    keys = ["loss"] + [f"{t}_{k}" for t in TASKS for k in ("loss", "weight")]
    if method in VALIDATED:
        keys += ["val_loss"] + [f"val_{t}_loss" for t in TASKS]
    for key in keys:
        assert np.all(np.isfinite(history1[key])), key
        np.testing.assert_allclose(
            history1[key], history2[key], rtol=1e-4, atol=1e-6, err_msg=key
        )
    # float32 sums in another order on two replicas: FairGrad's weights
    # differed by 1.05e-5 after training with every label on an AMD EPYC
    # machine (2026-12-02),
    # under 1e-5 on Intel; a replica bug (a loss not divided by the replicas)
    # moves them by orders of magnitude more
    for w1, w2 in zip(model1.get_weights(), model2.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w2, atol=5e-5)
    state1, state2 = model1.weighting.variables, model2.weighting.variables
    assert len(state1) == len(state2)
    for v1, v2 in zip(state1, state2, strict=True):
        np.testing.assert_allclose(np.asarray(v1), np.asarray(v2), atol=1e-5)
    weights = np.array([history1[f"{t}_weight"] for t in TASKS])
    if method in ("static", "pcgrad"):
        np.testing.assert_array_equal(weights, 1.0)
    else:  # The weights moved, so the comparison above compared something.
        assert np.ptp(weights, axis=1).max() > 1e-4, weights


@pytest.mark.parametrize("method", ["uncertainty", "dwa", "famo"])
def test_keras_file_keeps_the_method_and_its_state(method, tmp_path):
    model, _ = trained(method, 1)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, keras_mtl.MultiTaskModel)
    assert loaded.weighting.get_config() == model.weighting.get_config()
    for saved, restored in zip(
        model.weighting.variables, loaded.weighting.variables, strict=True
    ):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(restored))
    history = loaded.fit(dataset(), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and f"{TASKS[0]}_weight" in history


def test_weights_of_another_method_are_refused_clearly(tmp_path):
    model, _ = trained("famo", 1)
    model.save_weights(tmp_path / "famo.weights.h5")
    with pytest.raises(ValueError, match="holds 7 loss-weighting variables"):
        build("uncertainty").load_weights(tmp_path / "famo.weights.h5")


def test_unknown_method_in_a_saved_config_is_refused():
    with pytest.raises(ValueError, match="Received: method='nope'"):
        weighting_from_config({"method": "nope", "task_names": TASKS})


def test_an_interrupted_dwa_run_resumes_with_its_state(tmp_path):
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    model = build("dwa")
    with pytest.raises(KeyboardInterrupt):
        model.fit(
            dataset(), epochs=3, verbose=0, callbacks=[backup, InterruptAtEpoch(2)]
        )
    state = [np.asarray(v) for v in model.weighting.state_variables()]
    assert state[2] == 2.0  # two epochs seen: epoch 3 would use new weights
    resumed = build("dwa")
    history = resumed.fit(dataset(), epochs=3, verbose=0, callbacks=[backup])
    assert history.epoch == [2]
    np.testing.assert_allclose(history.history["marital_status_weight"], state[0][:1])


def test_gradient_methods_refuse_a_cut_head2():
    config = tiny_config("static", extra=["model.stop_gradient=true"])
    model = keras_mtl.build_model(config, FEATURES)
    for method in ("pcgrad", "gradnorm"):
        with pytest.raises(ValueError, match="stop_gradient"):
            model.set_weighting(METHODS[method](TASKS))


# Export ---------------------------------------------------------------------

_READ_EXPORTS = """
import json, sys
import tensorflow as tf
result = {}
for path in sys.argv[1:]:
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    inputs = {
        name: tf.zeros([2], spec.dtype)
        for name, spec in signature.structured_input_signature[1].items()
    }
    outputs = signature(**inputs)
    result[path] = {
        "variables": sorted(v.name for v in loaded.variables),
        "outputs": {k: list(v.shape) for k, v in outputs.items()},
        "keras_mtl": "keras_mtl" in sys.modules,
    }
print(json.dumps(result))
"""


def test_exports_carry_no_weighting_state_and_need_no_custom_objects(tmp_path):
    import json

    paths = {}
    for method in sorted(METHODS):
        model, _ = trained(method, 1)
        paths[method] = str(keras_mtl.export_saved_model(model, tmp_path, method))
    result = subprocess.run(
        [sys.executable, "-c", _READ_EXPORTS, *paths.values()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    exports = json.loads(result.stdout.strip().splitlines()[-1])
    static = exports[paths["static"]]
    assert static["outputs"] == {"income": [2, 1], "marital_status": [2, 7]}
    assert not static["keras_mtl"]
    for method, path in paths.items():
        assert exports[path]["outputs"] == static["outputs"], method
        assert exports[path]["variables"] == static["variables"], method
    assert not any("famo" in v or "log_var" in v for v in static["variables"])
