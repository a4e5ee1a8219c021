"""What the model is built from: one spec per named input, one per scaled target.

The data sources describe their inputs with these specs (image shape, a numeric
column's training mean and variance, a categorical column's training
vocabulary) and the model builder turns each into a named `keras.Input` plus its
preprocessing, so the SavedModel takes raw values. A regression target that is
standardised for its loss has a `TargetScale` (the training split's mean and
standard deviation of its labelled rows): the model predicts in the target's
units, and the loss is the one of the standardised target.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class ImageFeature:
    """An image input; pixel values in [0, 255].

    `augment` names the augmentation layers the model applies in training
    only (`data.augment`, `keras_mtl.models.augmentation`).
    """

    name: str
    shape: tuple = (32, 32, 3)
    augment: tuple = ()


@dataclasses.dataclass(frozen=True)
class VectorFeature:
    """A float vector input, fed to the Trunk as it is (already standardised,
    as the embedded `mmoe_synthetic` and `funnel` datasets are)."""

    name: str
    shape: tuple = (1,)


@dataclasses.dataclass(frozen=True)
class NumericFeature:
    """A numeric column, standardised with its training-split statistics."""

    name: str
    mean: float = 0.0
    variance: float = 1.0


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
    """A string column, one-hot encoded over its training-split vocabulary."""

    name: str
    vocabulary: tuple = ()
    missing_values: tuple = ("?", "")


@dataclasses.dataclass(frozen=True)
class TargetScale:
    """A regression task's target: mean and standard deviation in its units."""

    name: str
    mean: float = 0.0
    std: float = 1.0


def input_features(features):
    """The specs of `features` that are model inputs (not `TargetScale`s)."""
    return tuple(f for f in features if not isinstance(f, TargetScale))


def target_scales(features):
    """Task name -> `TargetScale` of the regression targets in `features`."""
    return {f.name: f for f in features if isinstance(f, TargetScale)}


def normalized_targets(config, features):
    """Task name -> `TargetScale` of the regression tasks that standardise
    their target (`tasks.<name>.normalize`) and have one in `features`."""
    scales = target_scales(features)
    return {
        task.name: scales[task.name]
        for task in config.tasks
        if task.kind == "regression" and task.normalize and task.name in scales
    }


def feature_to_dict(feature):
    return {"type": type(feature).__name__, **dataclasses.asdict(feature)}


def feature_from_dict(config):
    config = dict(config)
    kinds = {
        cls.__name__: cls
        for cls in (
            ImageFeature,
            VectorFeature,
            NumericFeature,
            CategoricalFeature,
            TargetScale,
        )
    }
    cls = kinds[config.pop("type")]
    for key in ("shape", "vocabulary", "missing_values", "augment"):
        if key in config:
            config[key] = tuple(config[key])
    return cls(**config)
