"""Data: the embedded TFDS builders (`shapes`, `mmoe_synthetic`, `funnel`),
TFDS and CSV sources, one pipeline."""

from keras_mtl.data.features import (
    CategoricalFeature,
    ImageFeature,
    NumericFeature,
    VectorFeature,
)
from keras_mtl.data.pipeline import Datasets, load_datasets, repeat_epochs

__all__ = [
    "CategoricalFeature",
    "Datasets",
    "ImageFeature",
    "NumericFeature",
    "VectorFeature",
    "load_datasets",
    "repeat_epochs",
]
