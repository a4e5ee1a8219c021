"""The Input box: one `keras.Input` per feature, and its encoding in the model."""

import keras

from keras_mtl.data.features import (
    CategoricalFeature,
    ImageFeature,
    NumericFeature,
    VectorFeature,
    input_features,
)
from keras_mtl.models.augmentation import make_augmentation
from keras_mtl.models.preprocessing import CleanStrings, FillMissing, StandardizeImage

# The `shapes` input: what `build_model` assumes when given no features.
DEFAULT_FEATURES = (ImageFeature("image", (32, 32, 3)),)


def make_inputs(features, standardize_images=True):
    """The model's `keras.Input`s and their encoding into one tensor.

    An image is augmented (in training, when its spec names augmentations)
    and standardised; tabular columns are filled, normalised
    (numbers) or one-hot encoded (strings) with the training split's
    statistics and concatenated, so the model takes raw rows.

    Args:
        features: Feature specs (`Datasets.features`); `TargetScale`s among
            them are not inputs and are skipped.
        standardize_images: Whether an image is standardised
            (`StandardizeImage`); a pretrained backbone does its own
            preprocessing instead.

    Returns:
        `(inputs, encoded)`: a dict of name -> `keras.Input`, and the tensor
        the Trunk reads.
    """
    features = input_features(features)
    inputs, encoded = {}, []
    for feature in features:
        if isinstance(feature, ImageFeature):
            inputs[feature.name] = keras.Input(feature.shape, name=feature.name)
            image = inputs[feature.name]
            augment = make_augmentation(feature.augment)
            if augment is not None:  # Active in training only.
                image = augment(image)
            if standardize_images:
                image = StandardizeImage(name="standardize")(image)
            encoded.append(image)
        elif isinstance(feature, VectorFeature):
            inputs[feature.name] = keras.Input(feature.shape, name=feature.name)
            encoded.append(inputs[feature.name])
        elif isinstance(feature, NumericFeature):
            inputs[feature.name] = keras.Input((), name=feature.name)
            x = FillMissing(feature.mean, name=f"fill_{feature.name}")(
                inputs[feature.name]
            )
            normalize = keras.layers.Normalization(
                mean=feature.mean,
                variance=max(feature.variance, 1e-12),
                name=f"normalize_{feature.name}",
            )
            encoded.append(normalize(x))
        elif isinstance(feature, CategoricalFeature):
            inputs[feature.name] = keras.Input((), dtype="string", name=feature.name)
            x = CleanStrings(feature.missing_values, name=f"clean_{feature.name}")(
                inputs[feature.name]
            )
            lookup = keras.layers.StringLookup(
                vocabulary=list(feature.vocabulary),
                output_mode="one_hot",
                name=f"lookup_{feature.name}",
            )
            encoded.append(lookup(x))
        else:
            raise TypeError(f"Unknown feature spec: {feature!r}")
    kinds = {type(feature) for feature in features}
    if ImageFeature in kinds and len(features) > 1:
        raise ValueError(
            "A model takes one image input or tabular columns, not both. "
            f"Received features: {[f.name for f in features]}"
        )
    if len(encoded) > 1:
        return inputs, keras.layers.Concatenate(name="encoded_columns")(encoded)
    return inputs, encoded[0]
