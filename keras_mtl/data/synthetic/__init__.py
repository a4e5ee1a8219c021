"""The embedded `mmoe_synthetic` TFDS dataset (importing this registers it)."""

from keras_mtl.data.synthetic.mmoe_synthetic_dataset_builder import MmoeSynthetic

__all__ = ["MmoeSynthetic"]
