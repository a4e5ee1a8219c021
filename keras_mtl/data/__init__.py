"""Data: the embedded `shapes` TFDS builder, TFDS and CSV sources, one pipeline."""

from keras_mtl.data.features import CategoricalFeature, ImageFeature, NumericFeature
from keras_mtl.data.pipeline import Datasets, load_datasets

__all__ = [
    "CategoricalFeature",
    "Datasets",
    "ImageFeature",
    "NumericFeature",
    "load_datasets",
]
