"""The embedded `funnel` TFDS dataset (importing this registers it)."""

from keras_mtl.data.funnel.funnel_dataset_builder import Funnel

__all__ = ["Funnel"]
