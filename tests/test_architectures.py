"""Gated-expert trunks (MMoE, PLE) and Head 1 -> Head 2 links (ESMM, AITM):
gates, per-task representations, the gradient contract, ESMM's product, AITM's
transfer, 1 vs 2 replicas, `.keras` and SavedModel round trips."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from architecture_helpers import (
    ARCHITECTURES,
    FEATURES,
    IDS,
    batches,
    build,
    tiny_config,
    toy_data,
)

import keras_mtl
from keras_mtl import tasks as task_lib
from keras_mtl.models import MMoETrunk, PLETrunk, serving_model
from keras_mtl.models.aitm import attend

X = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")


# Gates and representations ----------------------------------------------------


def test_mmoe_has_one_gate_per_task_summing_to_one():
    trunk = MMoETrunk(experts=3, expert_units=4, tasks=2)
    representations = trunk(X)
    assert [tuple(r.shape) for r in representations] == [(5, 4), (5, 4)]
    gates = trunk.gate_weights(X)
    assert [tuple(g.shape) for g in gates] == [(5, 3), (5, 3)]
    for gate in gates:
        np.testing.assert_allclose(np.sum(gate, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("levels", [1, 2], ids=["cgc", "ple2"])
def test_ple_gates_mix_own_and_shared_experts(levels):
    trunk = PLETrunk(levels=levels, shared_experts=2, task_experts=3, expert_units=4)
    assert [tuple(r.shape) for r in trunk(X)] == [(5, 4), (5, 4)]
    gates = trunk.gate_weights(X)
    # Per level: each task's gate over its 3 + 2 shared experts; below the
    # last level a shared gate over all 2 * 3 + 2.
    expected = [(5, 5), (5, 5), (5, 8)] * (levels - 1) + [(5, 5), (5, 5)]
    assert [tuple(g.shape) for g in gates] == expected
    for gate in gates:
        np.testing.assert_allclose(np.sum(gate, axis=1), 1.0, rtol=1e-6)
    experts_per_level = 2 + 2 * 3
    dense_layers = levels * experts_per_level + levels * 2 + (levels - 1)
    assert len(trunk.trainable_variables) == 2 * dense_layers


@pytest.mark.parametrize("trunk", [MMoETrunk(), PLETrunk()], ids=["mmoe", "ple"])
def test_each_task_gets_its_own_representation(trunk):
    first, second = trunk(X)
    assert np.max(np.abs(np.asarray(first) - np.asarray(second))) > 1e-4


# The gradient contract ---------------------------------------------------------


def _gradient_norms(model, config, data):
    inputs, labels = data
    norms = {}
    for index, task in enumerate(config.tasks):
        with tf.GradientTape(persistent=True) as tape:
            output = model(inputs, training=True)[task.name]
            loss = task_lib.make_loss(task)(labels[task.name], output)
        for block in ("trunk", "head1", "head2"):
            variables = model.get_layer(block).trainable_variables
            grads = tape.gradient(loss, variables)
            norms[index + 1, block] = (
                None
                if all(g is None for g in grads)
                else float(tf.linalg.global_norm([g for g in grads if g is not None]))
            )
    return norms


@pytest.mark.parametrize(("trunk", "link"), ARCHITECTURES, ids=IDS)
def test_loss1_never_reaches_head2_and_loss2_reaches_everything(trunk, link):
    model, config = build(trunk, link)
    norms = _gradient_norms(model, config, toy_data())
    assert norms[1, "head2"] is None
    for key in [(1, "head1"), (1, "trunk"), (2, "head2"), (2, "head1"), (2, "trunk")]:
        assert norms[key] > 0.0, key


# ESMM --------------------------------------------------------------------------


def test_esmm_output_is_click_times_conversion_given_click():
    model, _ = build("mlp", "esmm")
    inputs, _ = toy_data(8)
    outputs = serving_model(model)(inputs)
    assert sorted(outputs) == ["click", "conversion", "conversion_given_click"]
    np.testing.assert_allclose(
        outputs["conversion"],
        outputs["click"] * outputs["conversion_given_click"],
        rtol=1e-6,
    )
    assert sorted(model(inputs)) == ["click", "conversion"]


def test_esmm_loss2_gradient_on_head1_flows_through_the_product():
    """d Loss 2 / d p1 = d Loss 2 / d (p1 p2) * p2: Head 1's output layer
    gets Loss 2's gradient even though Head 2 never reads Head 1's features."""
    model, config = build("mlp", "esmm")
    inputs, labels = toy_data()
    layer = model.get_layer("head1").output_layer
    with tf.GradientTape() as tape:
        output = model(inputs, training=True)["conversion"]
        loss = task_lib.make_loss(config.tasks[1])(labels["conversion"], output)
    grads = tape.gradient(loss, layer.trainable_variables)
    assert float(tf.linalg.global_norm(grads)) > 0.0


# AITM --------------------------------------------------------------------------


def test_attend_by_hand():
    # Scores <q_u, k_u> / sqrt(k): (2 / sqrt(2), 0).
    query = np.array([[[1.0, 1.0], [0.0, 1.0]]], "float32")
    key = np.array([[[1.0, 1.0], [0.0, 0.0]]], "float32")
    value = np.array([[[2.0, 0.0], [0.0, 4.0]]], "float32")
    mixed, weights = attend(query, key, value)
    scores = np.array([2.0, 0.0]) / np.sqrt(2.0)
    expected = np.exp(scores) / np.exp(scores).sum()
    np.testing.assert_allclose(np.asarray(weights)[0], expected, rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(mixed)[0], [2 * expected[0], 4 * expected[1]], rtol=1e-6
    )


def test_aitm_transfers_head1_features_by_attention_weights():
    model, _ = build("mlp", "aitm")
    head2 = model.get_layer("head2")
    rows = np.random.default_rng(1).normal(size=(4, 8)).astype("float32")
    weights = np.asarray(head2.transfer_weights([rows, rows]))
    assert weights.shape == (4, 2)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)
    # Head 2's output moves with Head 1's features, through `p` alone.
    features, prediction = head2([rows, rows, np.full((4, 1), 0.5, "float32")])
    other, _ = head2([rows, rows * 2.0, np.full((4, 1), 0.5, "float32")])
    assert np.max(np.abs(np.asarray(features) - np.asarray(other))) > 1e-5


def test_aitm_calibration_is_the_label_constraint():
    model, _ = build("mlp", "aitm", extra=["model.aitm_calibration=0.5"])
    head2 = model.get_layer("head2")
    rows = np.zeros((4, 8), "float32")
    p1 = np.array([[0.0], [1.0], [0.0], [1.0]], "float32")
    _, p2 = head2([rows, rows, p1])
    expected = 0.5 * np.mean(np.maximum(np.asarray(p2) - p1, 0.0))
    assert len(head2.losses) == 1
    np.testing.assert_allclose(float(head2.losses[0]), expected, rtol=1e-5)


# Training on 1 and 2 replicas -----------------------------------------------------


@pytest.mark.parametrize(("trunk", "link"), ARCHITECTURES, ids=IDS)
def test_one_and_two_replicas_train_alike(trunk, link):
    data = toy_data()
    histories = {}
    for replicas in (1, 2):
        model, _ = build(trunk, link, replicas)
        assert model.distribute_strategy.num_replicas_in_sync == replicas
        histories[replicas] = model.fit(batches(data), epochs=2, verbose=0).history
        weights = [np.asarray(w) for w in model.get_weights()]
        if replicas == 1:
            first = weights
    for key in ("loss", "click_loss", "conversion_loss"):
        np.testing.assert_allclose(histories[1][key], histories[2][key], rtol=1e-4)
    for a, b in zip(first, weights, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


# Round trips --------------------------------------------------------------------


@pytest.mark.parametrize(("trunk", "link"), ARCHITECTURES, ids=IDS)
def test_keras_file_and_saved_model_round_trip(trunk, link, tmp_path):
    model, _ = build(trunk, link)
    inputs, _ = toy_data(8)
    expected = serving_model(model)(inputs)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    reloaded = serving_model(loaded)(inputs)
    assert sorted(reloaded) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(reloaded[name], expected[name], atol=1e-6)
    version = keras_mtl.export_saved_model(loaded, tmp_path / "saved", "arch")
    served = tf.saved_model.load(str(version)).signatures["serving_default"]
    answer = served(**{k: tf.constant(v) for k, v in inputs.items()})
    assert sorted(answer) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(answer[name], expected[name], atol=1e-5)


# Config ----------------------------------------------------------------------------


@pytest.mark.parametrize("link", ["esmm", "aitm"])
def test_esmm_and_aitm_need_two_binary_tasks(link):
    with pytest.raises(ValueError, match="both tasks are binary"):
        keras_mtl.load_config("adult", [f"model.head2_input={link}"])


def test_gated_single_task_baseline_has_one_gate():
    config = tiny_config("mmoe", "esmm")
    model = keras_mtl.build_single_task_model(config, "conversion", FEATURES)
    assert len(model.get_layer("trunk").gates) == 1
    assert list(model.output) == ["conversion"]
