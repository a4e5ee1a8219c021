"""The model's shape, its gradient contract and its serialisation."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import tasks as task_lib
from keras_mtl.data.features import CategoricalFeature, ImageFeature, NumericFeature
from keras_mtl.models import (
    CleanStrings,
    ConvTrunk,
    FillMissing,
    MLPTrunk,
    StandardizeImage,
    TaskHead,
)

TABULAR = (
    NumericFeature("age", 40.0, 100.0),
    NumericFeature("hours-per-week", 40.0, 25.0),
    CategoricalFeature("workclass", ("Private", "State-gov")),
)


def tabular_batch(size=8, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {
        "age": tf.constant(rng.uniform(20, 60, size), tf.float32),
        "hours-per-week": tf.constant(rng.uniform(10, 60, size), tf.float32),
        "workclass": tf.constant(rng.choice(["Private", " State-gov", "?"], size)),
    }
    labels = {
        "first": tf.constant(rng.integers(0, 3, size), tf.int32),
        "second": tf.constant(rng.integers(0, 2, (size, 1)), tf.float32),
    }
    return inputs, labels


def image_batch(size=4, seed=0):
    rng = np.random.default_rng(seed)
    inputs = {"image": tf.constant(rng.uniform(0, 255, (size, 32, 32, 3)), tf.float32)}
    labels = {
        "first": tf.constant(rng.integers(0, 3, size), tf.int32),
        "second": tf.constant(rng.integers(0, 2, (size, 1)), tf.float32),
    }
    return inputs, labels


def small_config(trunk="mlp", **model):
    overrides = [
        f"model.trunk={trunk}",
        "model.width=8",
        "model.depth=2",
        "model.head_units=8",
        "tasks.0.name=first",
        "tasks.0.num_classes=3",
        "tasks.1.name=second",
        "tasks.1.kind=binary",
        "tasks.0.weight=0.3",
        "tasks.1.weight=2.0",
    ]
    overrides += [f"model.{key}={str(value).lower()}" for key, value in model.items()]
    return keras_mtl.load_config("shapes", overrides)


def build(trunk="mlp", **model):
    config = small_config(trunk, **model)
    features = TABULAR if trunk == "mlp" else (ImageFeature("image"),)
    batch = tabular_batch() if trunk == "mlp" else image_batch()
    return keras_mtl.build_model(config, features), config, batch


def gradient_norms(model, config, batch):
    """{(loss task, block): gradient norm} measured with one tape per loss."""
    inputs, labels = batch
    norms = {}
    for task in config.tasks:
        loss_fn = task_lib.make_loss(task)
        with tf.GradientTape() as tape:
            predictions = model(inputs, training=True)
            loss = loss_fn(labels[task.name], predictions[task.name])
        blocks = {
            block: [v.value for v in model.get_layer(block).trainable_variables]
            for block in ("trunk", "head1", "head2")
        }
        grads = tape.gradient(loss, blocks, unconnected_gradients="zero")
        for block, block_grads in grads.items():
            norms[task.name, block] = float(tf.linalg.global_norm(block_grads))
    return norms


def test_blocks_and_outputs_are_named_after_the_diagram():
    model, config, (inputs, _) = build()
    assert [model.get_layer(name).name for name in ("trunk", "head1", "head2")] == [
        "trunk",
        "head1",
        "head2",
    ]
    assert isinstance(model.get_layer("trunk"), MLPTrunk)
    outputs = model(inputs)
    assert sorted(outputs) == ["first", "second"]
    assert outputs["first"].shape == (8, 3) and outputs["second"].shape == (8, 1)
    np.testing.assert_allclose(np.sum(outputs["first"], axis=1), 1.0, rtol=1e-5)
    assert set(model.input_names if hasattr(model, "input_names") else inputs) == set(
        inputs
    )


def assert_gradient_contract(norms):
    """Loss 1 never reaches Head 2; every other (loss, block) pair gets a gradient."""
    assert norms["first", "head2"] == 0.0
    for key in [
        ("first", "head1"),
        ("first", "trunk"),
        ("second", "head2"),
        ("second", "head1"),
        ("second", "trunk"),
    ]:
        assert norms[key] > 0.0, key


@pytest.mark.parametrize("trunk", ["mlp", "cnn"])
def test_gradient_contract(trunk):
    model, config, batch = build(trunk)
    assert_gradient_contract(gradient_norms(model, config, batch))


def test_loss1_gradient_of_head2_is_none_not_just_small():
    model, config, (inputs, labels) = build()
    loss_fn = task_lib.make_loss(config.tasks[0])
    with tf.GradientTape() as tape:
        loss = loss_fn(labels["first"], model(inputs, training=True)["first"])
    grads = tape.gradient(loss, model.get_layer("head2").trainable_variables)
    assert grads and all(grad is None for grad in grads)


def test_stop_gradient_keeps_loss2_out_of_head1_and_trunk():
    model, config, batch = build(stop_gradient=True)
    norms = gradient_norms(model, config, batch)
    assert norms["second", "head2"] > 0.0
    assert norms["second", "head1"] == 0.0
    assert norms["second", "trunk"] == 0.0
    assert norms["first", "head1"] > 0.0 and norms["first", "trunk"] > 0.0


def test_head2_reads_head1_prediction_only_when_asked():
    def head1_output_layer_norm(**model_options):
        model, config, (inputs, labels) = build(**model_options)
        loss_fn = task_lib.make_loss(config.tasks[1])
        with tf.GradientTape() as tape:
            loss = loss_fn(labels["second"], model(inputs, training=True)["second"])
        layer = model.get_layer("head1").output_layer
        variables = [v.value for v in layer.trainable_variables]
        grads = tape.gradient(loss, variables, unconnected_gradients="zero")
        return float(tf.linalg.global_norm(grads))

    assert head1_output_layer_norm(head2_input="features") == 0.0
    assert head1_output_layer_norm(head2_input="features+prediction") > 0.0


def test_compiled_total_loss_is_the_weighted_sum_of_task_losses():
    model, config, (inputs, labels) = build()
    logs = model.evaluate(inputs, labels, verbose=0, return_dict=True)
    expected = 0.3 * logs["first_loss"] + 2.0 * logs["second_loss"]
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    assert {"first_accuracy", "second_auc", "second_accuracy"} <= set(logs)


def test_tabular_inputs_take_raw_values():
    model, _, _ = build()
    raw = {
        "age": tf.constant([np.nan, 30.0]),
        "hours-per-week": tf.constant([40.0, 40.0]),
        "workclass": tf.constant([" Private", "?"]),
    }
    outputs = model(raw)
    assert np.isfinite(outputs["first"].numpy()).all()
    cleaned = CleanStrings(("?", ""))(tf.constant([" a ", "?", "b"]))
    assert cleaned.numpy().ravel().tolist() == [b"a", b"", b"b"]
    filled = FillMissing(7.0)(tf.constant([np.nan, 1.0]))
    assert filled.numpy().ravel().tolist() == [7.0, 1.0]
    filled = FillMissing(7.0)(tf.constant([np.inf, -np.inf, 2.0]))
    assert filled.numpy().ravel().tolist() == [7.0, 7.0, 2.0]


@pytest.mark.parametrize(
    "layer",
    [
        MLPTrunk(units=5, depth=3, dropout=0.1, name="trunk"),
        ConvTrunk(filters=4, depth=2, name="trunk"),
        TaskHead(
            units=4,
            output_units=3,
            output_activation="softmax",
            depth=2,
            stop_gradient=True,
            name="head2",
        ),
        CleanStrings(missing_values=("NA",), name="clean"),
        FillMissing(value=2.5, name="fill"),
        StandardizeImage(name="standardize"),
    ],
)
def test_custom_layers_round_trip_through_their_config(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    assert clone.name == layer.name
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"].startswith("keras_mtl>")


@pytest.mark.parametrize("trunk", ["mlp", "cnn"])
def test_keras_file_round_trip(tmp_path, trunk):
    model, _, (inputs, _) = build(trunk)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, keras_mtl.MultiTaskModel)
    for name, value in model(inputs).items():
        np.testing.assert_allclose(reloaded(inputs)[name], value, atol=1e-6)
    assert (
        reloaded.get_layer("head2").get_config()
        == model.get_layer("head2").get_config()
    )


def test_mixed_precision_keeps_outputs_float32():
    config = small_config("mlp").replace(["train.mixed_precision=true"])
    model = keras_mtl.build_model(config, TABULAR)
    assert model.get_layer("trunk").compute_dtype == "float16"
    assert model.get_layer("head1").compute_dtype == "float16"
    outputs = model(tabular_batch()[0])
    assert {value.dtype for value in outputs.values()} == {tf.float32}
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


def test_standardize_image_matches_tensorflow():
    images = np.random.default_rng(1).uniform(0, 255, (3, 8, 8, 3)).astype("float32")
    images[2] = 7.0  # a flat image: no division by zero
    expected = tf.image.per_image_standardization(images)
    np.testing.assert_allclose(StandardizeImage()(images), expected, atol=1e-4)
