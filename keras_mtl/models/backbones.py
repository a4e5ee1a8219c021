"""Pretrained image backbones as the Trunk.

`model.trunk = "keras.applications.<Name>"` (`MobileNetV3Small`,
`EfficientNetV2B0`, `ResNet50`, ...) builds that application without its
classifier (`include_top=False`, `pooling="avg"`); `model.trunk =
"keras_hub:<preset>"` loads a KerasHub image backbone with
`keras_hub.models.Backbone.from_preset` (a preset name or a local preset
directory) and pools its feature map. Either way the backbone itself is the
layer named `"trunk"`.

`model.trunk_weights`:

| value | `keras.applications.<Name>` | `keras_hub:<preset>` |
|---|---|---|
| `pretrained` (default) | ImageNet weights (downloaded once to `~/.keras/models`) | the preset's weights |
| `imagenet` | the same as `pretrained` | refused: say `pretrained` |
| `none` | random initial weights | random initial weights |
| a file path | `backbone.load_weights(path)`: a `.weights.h5` or `.keras` file of the same backbone at the same input shape | the same |

Pixels: the model takes images in [0, 255] (`model.image_range = "0-255"`) or
[0, 1] (`"0-1"`, rescaled to [0, 255] inside the model), and applies the
backbone's own preprocessing inside the model, so that an export takes raw
pixels: the applications that have `include_preprocessing` do it themselves;
for the others (ResNet, VGG, Xception, ...) `ApplicationPreprocessing` calls
`keras.applications.<family>.preprocess_input`; a KerasHub backbone gets its
preset's `ImageConverter` (scaling and resizing).

With pretrained or loaded weights, the backbone's `BatchNormalization` layers
stay frozen (inference mode, moving statistics) in every phase, as the Keras
transfer-learning guide does: fine-tuning would otherwise wreck what they
learned on small batches, and per-replica batch statistics would make results
depend on the replica count. With `trunk_weights = "none"` they train.
"""

import contextlib
import inspect
import os

import keras

APPLICATIONS_PREFIX = "keras.applications."
KERAS_HUB_PREFIX = "keras_hub:"
PRETRAINED = ("pretrained", "imagenet")


def is_backbone(trunk):
    """Whether `model.trunk` names a pretrained backbone, not a built-in trunk."""
    return trunk.startswith((APPLICATIONS_PREFIX, KERAS_HUB_PREFIX))


def application_families():
    """Application name -> the `keras.applications` module that holds it.

    `ResNet50` -> `resnet50`, `MobileNetV3Small` -> `mobilenet_v3`: the module
    whose `preprocess_input` the application expects.
    """
    families = {}
    for family in sorted(dir(keras.applications), reverse=True):
        module = getattr(keras.applications, family)
        if not inspect.ismodule(module) or not hasattr(module, "preprocess_input"):
            continue
        for name in dir(module):
            if name[:1].isupper() and callable(getattr(module, name)):
                families.setdefault(name, family)
    return families


def application_names():
    """The names `model.trunk = "keras.applications.<Name>"` accepts."""
    return sorted(
        name
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    )


@keras.saving.register_keras_serializable(package="keras_mtl")
class ApplicationPreprocessing(keras.layers.Layer):
    """`keras.applications.<family>.preprocess_input` as a layer.

    It takes pixels in [0, 255], as every `preprocess_input` does, and runs in
    float32 whatever the model's dtype policy.

    Args:
        family: The `keras.applications` module, such as `"resnet50"`.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, family, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.family = family

    def call(self, inputs):
        module = getattr(keras.applications, self.family)
        return module.preprocess_input(keras.ops.cast(inputs, "float32"))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return {**config, "family": self.family}


def backbone_trunk(config, images, dtype=None):
    """Preprocesses `images` and runs them through the backbone `"trunk"`.

    Args:
        config: A `keras_mtl.Config` whose `model.trunk` names a backbone.
        images: The symbolic image batch, pixels in `model.image_range`.
        dtype: The blocks' dtype policy (`mixed_float16` or None).

    Returns:
        One feature vector per image.
    """
    model = config.model
    if model.image_range == "0-1":
        images = keras.layers.Rescaling(255.0, name="pixels_to_0_255")(images)
    shape = tuple(images.shape[1:])
    _check_weights_file(model)
    if model.trunk.startswith(APPLICATIONS_PREFIX):
        images, trunk = _application(model, images, shape, dtype)
    else:
        images, trunk = _keras_hub_backbone(model, images, dtype)
    # Named after the diagram's box (some applications take no other name:
    # EfficientNetV2 looks its blocks up by its `name` argument).
    trunk.name = "trunk"
    pretrained = model.trunk_weights != "none"
    set_trunk_trainable(trunk, initial_trunk_trainable(config), pretrained)
    features = trunk(images)
    if len(features.shape) == 4:
        features = keras.layers.GlobalAveragePooling2D(name="trunk_pooling")(features)
    elif len(features.shape) == 3:  # tokens of a vision transformer
        features = keras.layers.GlobalAveragePooling1D(name="trunk_pooling")(features)
    return features


def initial_trunk_trainable(config):
    """Whether the Trunk trains in the first epoch (frozen in phase 1)."""
    return config.model.trunk_trainable and config.train.freeze_epochs == 0


def set_trunk_trainable(trunk, trainable, freeze_batch_norm):
    """Sets `trunk.trainable`, keeping its `BatchNormalization` layers frozen
    when `freeze_batch_norm` (a frozen one runs in inference mode)."""
    trunk.trainable = trainable
    if freeze_batch_norm:
        for layer in _all_layers(trunk):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def _all_layers(layer):
    for inner in getattr(layer, "layers", []):
        yield inner
        yield from _all_layers(inner)


def _application(model, images, shape, dtype):
    name = model.trunk[len(APPLICATIONS_PREFIX) :]
    if name not in application_names():
        raise ValueError(
            f"model.trunk names no Keras application {name!r}. Expected "
            f"keras.applications.<Name> with <Name> one of {application_names()}. "
            f"Received: model.trunk={model.trunk!r}"
        )
    application = getattr(keras.applications, name)
    arguments = {"include_top": False, "pooling": "avg"}
    if "include_preprocessing" in inspect.signature(application).parameters:
        arguments["include_preprocessing"] = True
    else:
        family = application_families().get(name)
        if family is None:
            raise ValueError(
                f"keras.applications.{name} has no include_preprocessing argument "
                "and no keras.applications module with its preprocess_input. "
                f"Received: model.trunk={model.trunk!r}"
            )
        preprocessing = ApplicationPreprocessing(family, name="trunk_preprocessing")
        images = preprocessing(images)
    weights = "imagenet" if model.trunk_weights in PRETRAINED else None
    with _dtype_policy(dtype):
        try:
            trunk = application(input_shape=shape, weights=weights, **arguments)
        except Exception as error:
            if weights is None:
                raise
            raise RuntimeError(
                f"Could not build {model.trunk} with ImageNet weights for input "
                f"shape {shape}: {error}. Without network access set "
                "model.trunk_weights to a local weights file or 'none'."
            ) from error
    _load_weights_file(trunk, model, shape)
    return images, trunk


def _keras_hub_backbone(model, images, dtype):
    try:
        import keras_hub
    except ImportError:
        raise ImportError(
            f"model.trunk={model.trunk!r} needs the keras-hub package: "
            "pip install keras-hub (or pip install 'keras-mtl[backbones]')."
        ) from None
    if model.trunk_weights == "imagenet":
        raise ValueError(
            "model.trunk_weights='imagenet' is for keras.applications trunks; a "
            "KerasHub preset brings its own weights. Expected 'pretrained', "
            f"'none' or a weights file. Received: model.trunk={model.trunk!r}"
        )
    preset = model.trunk[len(KERAS_HUB_PREFIX) :]
    trunk = keras_hub.models.Backbone.from_preset(
        preset,
        load_weights=model.trunk_weights == "pretrained",
        dtype=dtype,
    )
    converter = keras_hub.layers.ImageConverter.from_preset(
        preset, name="trunk_preprocessing"
    )
    _load_weights_file(trunk, model, tuple(images.shape[1:]))
    return converter(images), trunk


def _check_weights_file(model):
    path = model.trunk_weights
    if path not in (*PRETRAINED, "none") and not os.path.isfile(path):
        raise FileNotFoundError(
            f"model.trunk_weights={path!r} is no file. Expected 'pretrained', "
            "'none' or the path of a .weights.h5 or .keras file of the backbone."
        )


def _load_weights_file(trunk, model, shape):
    path = model.trunk_weights
    if path in (*PRETRAINED, "none"):
        return
    try:
        trunk.load_weights(path)
    except ValueError as error:
        raise ValueError(
            f"model.trunk_weights={path!r} does not fit {model.trunk} "
            f"(include_top=False) at input shape {shape}: {error}"
        ) from error


@contextlib.contextmanager
def _dtype_policy(policy):
    """Sets Keras' global dtype policy while an application is built: the
    applications take no `dtype` argument."""
    previous = keras.config.dtype_policy()
    if policy is not None:
        keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
