"""The embedded `shapes` TFDS dataset (importing this registers it)."""

from keras_mtl.data.shapes.shapes_dataset_builder import Shapes

__all__ = ["Shapes"]
