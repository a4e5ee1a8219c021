"""Pretrained backbones as the Trunk: Keras applications and KerasHub presets.

No weights are downloaded: the loading path is tested with a weights file
that the test writes (random weights, saved, loaded by path), and the KerasHub
path with a tiny `ResNetBackbone` saved as a local preset.
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
from keras_mtl.export import export_saved_model
from keras_mtl.models.backbones import ApplicationPreprocessing
from keras_mtl.models.multi_task_model import frozen_trunk_layers

MOBILENET = "keras.applications.MobileNetV3Small"  # builds in ~2 s at 32x32
IMAGE = (ImageFeature("image", (32, 32, 3)),)


def backbone_config(*overrides):
    return small_config(MOBILENET).replace(list(overrides))


def weights_of(model):
    return {variable.path: np.array(variable) for variable in model.weights}


def assert_same_weights(model, before):
    changed = [
        path
        for path, value in weights_of(model).items()
        if not np.array_equal(value, before[path])
    ]
    assert not changed, f"changed: {changed}"


def assert_inference_changes_no_weight(model, inputs):
    """`model(x)` and `predict` leave every weight, moving statistics
    included, as it was, and give the same outputs."""
    before = weights_of(model)
    called = model(inputs)
    predicted = model.predict(inputs, verbose=0)
    assert_same_weights(model, before)
    for name, value in called.items():
        np.testing.assert_allclose(predicted[name], value, atol=1e-5)


@pytest.fixture(scope="module")
def keras_hub_preset(tmp_path_factory):
    """`keras_hub:<dir>` of a tiny ResNet (random weights, batch norms) and
    its image converter, saved with `save_to_preset`: nothing downloaded."""
    try:
        import keras_hub
    except ImportError:
        pytest.fail("keras-hub is missing: pip install -e '.[dev]' installs it")

    path = str(tmp_path_factory.mktemp("keras_hub_preset"))
    keras.utils.set_random_seed(0)
    keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],  # KerasHub's ResNet requires 64 here
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
    ).save_to_preset(path)
    converter = keras_hub.layers.ResNetImageConverter(
        image_size=(32, 32), scale=1 / 255.0
    )
    converter.save_to_preset(path)
    return f"keras_hub:{path}"


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
        features = keras.layers.Conv2D(4, 3)(inputs)
        return keras.Model(inputs, keras.layers.BatchNormalization()(features))

    def converter_from_preset(preset, name=None):
        # As KerasHub's ImageConverter: a Resizing (call defaults to training=True)
        calls["converter"] = preset
        return keras.layers.Resizing(32, 32, name=name)

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
    assert_inference_changes_no_weight(model, image_batch()[0])


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.trunk_weights=none"],
        ["model.trunk_weights=pretrained"],
        ["model.trunk_weights=pretrained", "model.trunk_trainable=false"],
    ],
    ids=["none", "pretrained", "frozen"],
)
def test_keras_hub_trunk_inference_changes_no_weight_before_and_after_reload(
    keras_hub_preset, overrides, tmp_path
):
    """The preset's `ImageConverter` holds a `Resizing`, whose `call` defaults
    to `training=True`: a call without `training` must still run the
    backbone's batch norms in inference mode."""
    config = small_config(keras_hub_preset).replace(overrides)
    model = keras_mtl.build_model(config, IMAGE)
    trunk = model.get_layer("trunk")
    batch_norms = [
        layer
        for layer in trunk.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert batch_norms
    inputs, _ = image_batch()
    assert_inference_changes_no_weight(model, inputs)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert_inference_changes_no_weight(reloaded, inputs)
    for name, value in model(inputs).items():
        np.testing.assert_allclose(reloaded(inputs)[name], value, atol=1e-5)

    # The frozen layers stay frozen through the .keras file.
    assert frozen_trunk_layers(reloaded) == frozen_trunk_layers(model)
    assert len(reloaded.trainable_weights) == len(model.trainable_weights)
    pretrained = "model.trunk_weights=pretrained" in overrides
    assert all(layer.trainable != pretrained for layer in batch_norms)
    # Training mode: frozen batch norms keep their statistics, others update.
    before = weights_of(reloaded)
    reloaded(inputs, training=True)
    moving = [path for path in before if "moving" in path]
    changed = [
        p for p in moving if not np.array_equal(before[p], weights_of(reloaded)[p])
    ]
    assert moving and len(changed) == (0 if pretrained else len(moving))


def test_keras_hub_trunk_export_serves_without_changing_a_weight(
    keras_hub_preset, tmp_path
):
    config = small_config(keras_hub_preset).replace(["model.trunk_weights=none"])
    model = keras_mtl.build_model(config, IMAGE)
    inputs, _ = image_batch()
    # export_saved_model checks the reloaded signature against model(x,
    # training=False); a signature in training mode would differ.
    path = export_saved_model(model, tmp_path, "hub", inputs=inputs)
    loaded = tf.saved_model.load(str(path))
    before = [variable.numpy() for variable in loaded.variables]
    loaded.signatures["serving_default"](**inputs)
    for variable, value in zip(loaded.variables, before, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_augmented_application_trunk_inference_changes_no_weight(tmp_path):
    """A random augmentation layer defaults to `training=True` too."""
    config = backbone_config("model.trunk_weights=none")
    features = (ImageFeature("image", (32, 32, 3), augment=("flip",)),)
    model = keras_mtl.build_model(config, features)
    inputs, _ = image_batch()
    assert_inference_changes_no_weight(model, inputs)
    model.save(tmp_path / "model.keras")
    assert_inference_changes_no_weight(
        keras.models.load_model(tmp_path / "model.keras"), inputs
    )
