"""Raw-value cleaning inside the model, so a SavedModel takes raw CSV rows.

Keras' `StringLookup` and `Normalization` do the encoding; these two layers do
what they do not: strip the stray spaces of real CSV files, map missing-value
tokens such as `?` to one out-of-vocabulary value, and impute missing numbers.
Both turn a `(batch,)` column into a `(batch, 1)` one.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mtl")
class CleanStrings(keras.layers.Layer):
    """Strips whitespace and maps missing-value tokens to `""`.

    Args:
        missing_values: Tokens that mean "missing", compared after stripping.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, missing_values=("?", ""), **kwargs):
        super().__init__(**kwargs)
        self.missing_values = tuple(missing_values)

    def call(self, inputs):
        import tensorflow as tf  # String ops exist only in TensorFlow.

        values = tf.strings.strip(inputs)
        for token in self.missing_values:
            values = tf.where(values == token, "", values)
        return tf.reshape(values, (-1, 1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "missing_values": list(self.missing_values)}


@keras.saving.register_keras_serializable(package="keras_mtl")
class FillMissing(keras.layers.Layer):
    """Replaces NaN and infinities with `value` (the column's training mean).

    Non-finite numbers count as missing, in training data (the CSV source
    does the same) and in requests to the exported model alike.

    Args:
        value: The replacement.
        **kwargs: `keras.layers.Layer` arguments.
    """

    def __init__(self, value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, inputs):
        inputs = ops.reshape(ops.cast(inputs, self.compute_dtype), (-1, 1))
        return ops.where(
            ops.isfinite(inputs), inputs, ops.cast(self.value, inputs.dtype)
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        return {**super().get_config(), "value": self.value}


@keras.saving.register_keras_serializable(package="keras_mtl")
class StandardizeImage(keras.layers.Layer):
    """Scales each image to zero mean and unit variance over its pixels.

    The same as `tf.image.per_image_standardization`: it makes the model
    indifferent to an image's brightness and contrast, which the trunk would
    otherwise have to learn, and takes raw pixel values in any range.

    Args:
        **kwargs: `keras.layers.Layer` arguments.
    """

    def call(self, inputs):
        inputs = ops.cast(inputs, self.compute_dtype)
        axes = tuple(range(1, len(inputs.shape)))
        mean = ops.mean(inputs, axis=axes, keepdims=True)
        std = ops.std(inputs, axis=axes, keepdims=True)
        pixels = 1
        for size in inputs.shape[1:]:
            pixels *= size
        return (inputs - mean) / ops.maximum(std, 1.0 / pixels**0.5)

    def compute_output_shape(self, input_shape):
        return input_shape
