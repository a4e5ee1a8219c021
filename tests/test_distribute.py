"""Strategy selection and replica invariance on logical CPUs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl.data.features import CategoricalFeature, NumericFeature


def test_auto_on_cpu_is_the_default_strategy_and_mirrored_splits_the_cpu(tiny_config):
    assert tf.config.list_physical_devices("GPU") == []
    strategy = keras_mtl.make_strategy(tiny_config.train)
    assert strategy.num_replicas_in_sync == 1
    assert not isinstance(strategy, tf.distribute.MirroredStrategy)
    mirrored = keras_mtl.make_strategy(tiny_config.replace(["train.replicas=2"]).train)
    assert isinstance(mirrored, tf.distribute.MirroredStrategy)
    assert mirrored.num_replicas_in_sync == 2
    one = keras_mtl.make_strategy(
        tiny_config.replace(["train.strategy=mirrored"]).train
    )
    assert (
        isinstance(one, tf.distribute.MirroredStrategy)
        and one.num_replicas_in_sync == 1
    )


def test_jit_compile_on_logical_cpus_is_rejected_clearly(tiny_config):
    config = tiny_config.replace(["train.replicas=2", "train.jit_compile=true"])
    with pytest.raises(
        ValueError, match="train.jit_compile=.* fails under MirroredStrategy on logical"
    ):
        keras_mtl.make_strategy(config.train)


def test_more_cpu_replicas_than_configured_says_what_to_do():
    with pytest.raises(
        RuntimeError, match="configure_cpu_replicas\\(3\\) before any other"
    ):
        keras_mtl.configure_cpu_replicas(3)


def _train_unshuffled(config, replicas):
    config = config.replace(
        # 64 validation examples: one even batch on 1 and on 2 replicas.
        [
            f"train.replicas={replicas}",
            "train.shuffle=false",
            "train.epochs=2",
            "data.validation_fraction=0.125",
            f"train.run_dir={config.train.run_dir}/{replicas}",
        ]
    )
    model, history, _ = keras_mtl.train(config, verbose=0)
    return model, history.history


def test_one_and_two_replicas_give_the_same_losses_and_weights(tiny_config):
    """Same seed, same unshuffled batches: 2 replicas train exactly as 1."""
    model1, history1 = _train_unshuffled(tiny_config, 1)
    model2, history2 = _train_unshuffled(tiny_config, 2)
    assert model2.distribute_strategy.num_replicas_in_sync == 2
    for key in ("loss", "coarse_loss", "fine_loss", "val_coarse_loss", "val_fine_loss"):
        np.testing.assert_allclose(history1[key], history2[key], rtol=1e-4, err_msg=key)
    for w1, w2 in zip(model1.get_weights(), model2.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w2, atol=1e-5)


def _two_replicas():
    return keras_mtl.make_strategy(keras_mtl.TrainConfig(replicas=2))


def _string_model(model_class, strategy):
    with strategy.scope():
        text = keras.Input((), dtype="string", name="city")
        lookup = keras.layers.StringLookup(vocabulary=["a", "b"], output_mode="one_hot")
        x = keras.layers.Reshape((1,))(text)
        output = keras.layers.Dense(1, activation="sigmoid")(lookup(x))
        model = model_class({"city": text}, {"flag": output})
        model.compile("adam", loss={"flag": "binary_crossentropy"})
    return model


def _string_data():
    return tf.data.Dataset.from_tensor_slices(
        ({"city": ["a", "b", "c", "a"]}, {"flag": np.zeros((4, 1), "float32")})
    ).batch(4)


def test_string_inputs_train_under_two_replicas():
    strategy = _two_replicas()
    model = _string_model(keras_mtl.MultiTaskModel, strategy)
    history = model.fit(_string_data(), epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


def test_keras_still_fails_on_string_inputs_under_a_strategy():
    """Tells us when Keras no longer needs `MultiTaskModel._maybe_symbolic_build`.

    Keras 3.15 averages the first distributed batch to learn its shapes, which
    fails for strings. When this test fails, upstream fixed it: remove the
    override.
    """
    strategy = _two_replicas()
    model = _string_model(keras.Model, strategy)
    with pytest.raises(tf.errors.InvalidArgumentError, match="string"):
        model.fit(_string_data(), epochs=1, verbose=0, shuffle=False)


def test_tabular_model_with_strings_under_two_replicas(tmp_path):
    features = (
        NumericFeature("age", 40.0, 100.0),
        CategoricalFeature("city", ("a", "b")),
    )
    config = keras_mtl.load_config(
        "adult", ["train.replicas=2", "model.width=4", "model.head_units=4"]
    )
    strategy = keras_mtl.make_strategy(config.train)
    model = keras_mtl.build_model(config, features, strategy=strategy)
    rng = np.random.default_rng(0)
    data = tf.data.Dataset.from_tensor_slices(
        (
            {
                "age": rng.uniform(20, 60, 64).astype("float32"),
                "city": rng.choice(["a", "b", "?"], 64),
            },
            {
                "marital_status": rng.integers(0, 7, 64).astype("int32"),
                "income": rng.integers(0, 2, (64, 1)).astype("float32"),
            },
        )
    ).batch(16, drop_remainder=True)
    history = model.fit(data, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["income_loss"][0])
