"""Image augmentation as Keras preprocessing layers, active in training only.

`data.augment` names them; the model applies them to the image input before
it is standardised. Keras' random layers transform only when called with
`training=True`, so evaluation, prediction and every SavedModel signature see
the image as it is, while each training step draws new transformations on the
device that trains.

| name | Keras layer(s) |
|---|---|
| `flip` | `RandomFlip("horizontal")` |
| `crop` | `RandomZoom((-0.2, 0.0))` then `RandomTranslation(0.1, 0.1)`: a window of 80-100 % of each side, anywhere in the image, resized back |
| `rotation` | `RandomRotation(0.05)` (up to +-18 degrees) |
| `zoom` | `RandomZoom(0.2)` (in or out by up to 20 %) |
| `translation` | `RandomTranslation(0.1, 0.1)` |
| `contrast` | `RandomContrast(0.2)` |
| `brightness` | `RandomBrightness(0.2, value_range=(0, 255))` |
"""

import keras

from keras_mtl.config.validation import AUGMENTATIONS


def _layers(name):
    layers = keras.layers
    if name == "flip":
        return [layers.RandomFlip("horizontal")]
    if name == "crop":
        return [
            layers.RandomZoom((-0.2, 0.0), fill_mode="reflect"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect"),
        ]
    if name == "rotation":
        return [layers.RandomRotation(0.05, fill_mode="reflect")]
    if name == "zoom":
        return [layers.RandomZoom(0.2, fill_mode="reflect")]
    if name == "translation":
        return [layers.RandomTranslation(0.1, 0.1, fill_mode="reflect")]
    if name == "contrast":
        return [layers.RandomContrast(0.2, value_range=(0, 255))]
    if name == "brightness":
        return [layers.RandomBrightness(0.2, value_range=(0, 255))]
    raise ValueError(
        f"Unknown image augmentation. Expected one of {list(AUGMENTATIONS)}. "
        f"Received: {name!r}"
    )


def make_augmentation(names):
    """A `keras.Sequential` named "augment" of the layers for `names`, or
    None when `names` is empty. The layers draw from Keras' global seed
    (`keras.utils.set_random_seed`).

    Args:
        names: Augmentation names (`data.augment`), applied in this order.

    Returns:
        A `keras.Sequential`, or None.
    """
    if not names:
        return None
    layers = [layer for name in names for layer in _layers(name)]
    return keras.Sequential(layers, name="augment")
