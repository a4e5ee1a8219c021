"""Pretrained backbones as the Trunk: Keras applications and KerasHub presets.

No weights are downloaded: the loading path is tested with a weights file
that the test writes (random weights, saved, loaded by path).
"""

import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_models import (
    assert_gradient_contract,
    gradient_norms,
    image_batch,
    small_config,
)

import keras_mtl
from keras_mtl.data.features import ImageFeature
from keras_mtl.models.backbones import ApplicationPreprocessing

MOBILENET = "keras.applications.MobileNetV3Small"  # builds in ~2 s at 32x32
IMAGE = (ImageFeature("image", (32, 32, 3)),)


def backbone_config(*overrides):
    return small_config(MOBILENET).replace(list(overrides))


def test_backbone_is_the_trunk_and_keeps_the_gradient_contract():
    config = backbone_config("model.trunk_weights=none")
    model = keras_mtl.build_model(config, IMAGE)
    trunk = model.get_layer("trunk")
    assert isinstance(trunk, keras.Model)
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in trunk.layers)
    assert "standardize" not in [layer.name for layer in model.layers]
    assert_gradient_contract(gradient_norms(model, config, image_batch()))
    # From scratch, the batch norms train.
    batch_norms = [
        layer
        for layer in trunk.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert batch_norms and all(layer.trainable for layer in batch_norms)


def test_weights_file_loads_freezes_batch_norm_and_reads_0_1_pixels(tmp_path):
    keras.utils.set_random_seed(1)
    source = keras_mtl.build_model(backbone_config("model.trunk_weights=none"), IMAGE)
    path = tmp_path / "mobilenet.weights.h5"
    source.get_layer("trunk").save_weights(path)

    keras.utils.set_random_seed(2)
    config = backbone_config(
        f"model.trunk_weights={path}",
        "model.trunk_trainable=false",
        "model.image_range=0-1",
    )
    model = keras_mtl.build_model(config, IMAGE)
    trunk = model.get_layer("trunk")
    for loaded, saved in zip(
        trunk.weights, source.get_layer("trunk").weights, strict=True
    ):
        np.testing.assert_array_equal(loaded, saved)
    assert not trunk.trainable and not trunk.trainable_variables
    assert {w.path.split("/")[0] for w in model.trainable_variables} == {
        "head1",
        "head2",
    }

    # Batch norms in inference mode: training=True changes nothing.
    images = image_batch()[0]["image"]
    scaled = {"image": images / 255.0}
    features = keras.Model(model.inputs, model.get_layer("head1").input)
    np.testing.assert_allclose(
        features(scaled, training=True), features(scaled), atol=1e-5
    )
    # [0, 1] pixels into this model == [0, 255] pixels into the source model.
    model.set_weights(source.get_weights())
    np.testing.assert_allclose(
        model(scaled)["first"], source({"image": images})["first"], atol=1e-5
    )


def test_a_wrong_weights_file_names_the_key(tmp_path):
    config = backbone_config(f"model.trunk_weights={tmp_path / 'missing.weights.h5'}")
    with pytest.raises(FileNotFoundError, match="model.trunk_weights"):
        keras_mtl.build_model(config, IMAGE)


def test_application_preprocessing_is_the_family_preprocess_input():
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
    layer = ApplicationPreprocessing("resnet50")
    expected = keras.applications.resnet50.preprocess_input(pixels.copy())
    np.testing.assert_allclose(layer(pixels), expected, atol=1e-4)
    assert type(layer).from_config(layer.get_config()).family == "resnet50"


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["model.trunk=keras.applications.resnet-50"], "MobileNetV3Small"),
        (["model.trunk=keras_hub:"], "keras_hub:<preset"),
        (["model.trunk_weights=/some/file.h5"], "model.trunk_weights"),
        (["model.image_range=0-100"], "model.image_range"),
    ],
)
def test_bad_backbone_settings_are_refused(overrides, match):
    with pytest.raises(ValueError, match=match):
        keras_mtl.load_config("shapes", overrides)


def test_an_unknown_application_is_refused_when_the_model_is_built():
    config = keras_mtl.load_config(
        "shapes", ["model.trunk=keras.applications.NoSuchNet"]
    )
    with pytest.raises(ValueError, match="one of .*MobileNetV3Small"):
        keras_mtl.build_model(config, IMAGE)


def test_keras_hub_missing_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras_hub", None)
    config = keras_mtl.load_config(
        "shapes", ["model.trunk=keras_hub:resnet_18_imagenet"]
    )
    with pytest.raises(ImportError, match="pip install keras-hub"):
        keras_mtl.build_model(config, IMAGE)


def test_keras_hub_preset_is_loaded_with_its_image_converter(monkeypatch):
    """A stand-in `keras_hub` with the public calls the trunk makes."""
    calls = {}

    def backbone_from_preset(preset, load_weights=True, dtype=None):
        calls["backbone"] = (preset, load_weights)
        inputs = keras.Input((None, None, 3))
        return keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))

    def converter_from_preset(preset, name=None):
        calls["converter"] = preset
        return keras.layers.Rescaling(1 / 255.0, name=name)

    stand_in = types.SimpleNamespace(
        models=types.SimpleNamespace(
            Backbone=types.SimpleNamespace(from_preset=backbone_from_preset)
        ),
        layers=types.SimpleNamespace(
            ImageConverter=types.SimpleNamespace(from_preset=converter_from_preset)
        ),
    )
    monkeypatch.setitem(sys.modules, "keras_hub", stand_in)
    config = small_config("keras_hub:./my_preset").replace(["model.trunk_weights=none"])
    model = keras_mtl.build_model(config, IMAGE)
    assert calls == {"backbone": ("./my_preset", False), "converter": "./my_preset"}
    assert model.get_layer("trunk").output.shape == (None, None, None, 4)
    assert model.get_layer("head1").input.shape == (None, 4)  # pooled
    outputs = model(image_batch()[0])
    assert outputs["first"].shape == (4, 3) and outputs["first"].dtype == tf.float32
