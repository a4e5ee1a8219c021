"""Reaching a private Keras or TensorFlow name, and the error when it is gone.

Every module of `keras_mtl.compat` gets private names through `attribute` and
`import_module`, so that a Keras release which renames or removes one fails
with a `KerasInternalsError` that says which name, which Keras, which
keras-mtl feature, and which Keras versions keras-mtl was tested with, at
the moment that feature is used (never at `import keras_mtl`).
"""

import importlib

# The Keras versions the private names were tested with.
TESTED_RANGE = "keras>=3.15,<3.16"


class KerasInternalsError(RuntimeError):
    """A private Keras/TensorFlow name that keras-mtl uses is missing or changed.

    Args:
        name: The private name, e.g. `"Trainer._loss_tracker"`.
        feature: The keras-mtl feature that needs it, e.g. `"loss weighting"`.
    """

    def __init__(self, name, feature):
        import keras
        import tensorflow as tf

        self.name = name
        self.feature = feature
        super().__init__(
            f"keras-mtl's {feature} needs the private Keras/TensorFlow name "
            f"`{name}`, which Keras {keras.version()} (TensorFlow "
            f"{tf.__version__}) does not have or has changed. keras-mtl is "
            f"tested with {TESTED_RANGE}: install a version in that range, or "
            "update keras_mtl/compat/ and its canary tests in "
            "tests/test_compat.py."
        )


def attribute(obj, name, feature, owner=None):
    """`getattr(obj, name)`, or a `KerasInternalsError` when it is missing.

    Args:
        obj: The Keras/TensorFlow object.
        name: The private attribute, e.g. `"_compile_loss"`.
        feature: The keras-mtl feature that needs it (for the message).
        owner: The class name shown in the message (default: `obj`'s class).
    """
    try:
        return getattr(obj, name)
    except AttributeError:
        owner = owner or type(obj).__name__
        raise KerasInternalsError(f"{owner}.{name}", feature) from None


def require(obj, name, feature, owner=None):
    """Raises a `KerasInternalsError` unless `obj` has the attribute `name`."""
    attribute(obj, name, feature, owner)


def import_module(name, feature):
    """Imports the private module `name` (e.g. `"keras.src.utils.file_utils"`)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise KerasInternalsError(name, feature) from None
