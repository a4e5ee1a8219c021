"""The heads: Head 1 reads the Trunk, Head 2 reads Head 1.

One class serves both. A head returns `(features, prediction)`: its hidden
features, which Head 2 reads, and the task's prediction, which its loss reads.
Called on a list, a head concatenates the list first (Head 2 on Head 1's
features and prediction). `stop_gradient=True` cuts the gradient into the
head's inputs: on Head 2 it keeps Loss 2 away from Head 1 and the Trunk.
"""

import keras
from keras import ops

from keras_mtl.models.trunk import build_in_sequence


@keras.saving.register_keras_serializable(package="keras_mtl")
class TaskHead(keras.layers.Layer):
    """`depth` ReLU `Dense` layers of `units`, then the task's output layer.

    The output layer always computes in float32, so that mixed precision keeps
    the predictions and the losses in float32.

    Args:
        units: Width of the hidden layers.
        output_units: Width of the prediction (classes, or 1).
        output_activation: `"softmax"`, `"sigmoid"` or `"linear"`.
        depth: Number of hidden layers.
        dropout: Dropout rate after each hidden layer (0 disables it).
        stop_gradient: Whether to cut the gradient into the inputs.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    >>> head = TaskHead(units=8, output_units=3, output_activation="softmax")
    >>> features, prediction = head(keras.ops.ones((4, 16)))
    >>> features.shape, prediction.shape
    ((4, 8), (4, 3))
    """

    def __init__(
        self,
        units=64,
        output_units=1,
        output_activation="linear",
        depth=1,
        dropout=0.0,
        stop_gradient=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.output_units = output_units
        self.output_activation = output_activation
        self.depth = depth
        self.dropout = dropout
        self.stop_gradient = stop_gradient
        self.hidden_layers = [
            keras.layers.Dense(
                units, activation="relu", dtype=self.dtype_policy, name=f"hidden_{i}"
            )
            for i in range(depth)
        ]
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout else None
        self.output_layer = keras.layers.Dense(
            output_units, activation=output_activation, dtype="float32", name="output"
        )

    def build(self, input_shape):
        if isinstance(input_shape, list | tuple) and isinstance(
            input_shape[0], list | tuple
        ):
            width = sum(shape[-1] for shape in input_shape)
            input_shape = (*input_shape[0][:-1], width)
        build_in_sequence([*self.hidden_layers, self.output_layer], input_shape)

    def call(self, inputs, training=None):
        if isinstance(inputs, list | tuple):
            inputs = [ops.cast(x, self.compute_dtype) for x in inputs]
            x = ops.concatenate(inputs, axis=-1)
        else:
            x = inputs
        if self.stop_gradient:
            x = ops.stop_gradient(x)
        for dense in self.hidden_layers:
            x = dense(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x, self.output_layer(x)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, list | tuple) and isinstance(
            input_shape[0], list | tuple
        ):
            input_shape = input_shape[0]
        batch = tuple(input_shape[:-1])
        return (*batch, self.units), (*batch, self.output_units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "output_units": self.output_units,
            "output_activation": self.output_activation,
            "depth": self.depth,
            "dropout": self.dropout,
            "stop_gradient": self.stop_gradient,
        }
