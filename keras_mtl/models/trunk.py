"""The Trunk: the shared block that both heads read.

`MLPTrunk` for vectors and tabular rows, `ConvTrunk` for images. Neither uses
batch normalisation: its per-replica batch statistics would make results
depend on the number of replicas.
"""

import keras


def build_in_sequence(layers, input_shape):
    """Builds `layers` one after the other from `input_shape`; returns the output shape."""
    for layer in layers:
        layer.build(input_shape)
        input_shape = layer.compute_output_shape(input_shape)
    return input_shape


@keras.saving.register_keras_serializable(package="keras_mtl")
class MLPTrunk(keras.layers.Layer):
    """`depth` ReLU `Dense` layers of `units` each, with optional dropout.

    Args:
        units: Width of every layer.
        depth: Number of layers.
        dropout: Dropout rate after each layer (0 disables it).
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    >>> trunk = MLPTrunk(units=64, depth=2, name="trunk")
    >>> trunk(keras.ops.ones((4, 10))).shape
    (4, 64)
    """

    def __init__(self, units=64, depth=2, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.depth = depth
        self.dropout = dropout
        self.dense_layers = [
            keras.layers.Dense(
                units, activation="relu", dtype=self.dtype_policy, name=f"dense_{i}"
            )
            for i in range(depth)
        ]
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout else None

    def build(self, input_shape):
        build_in_sequence(self.dense_layers, input_shape)

    def call(self, inputs, training=None):
        x = inputs
        for dense in self.dense_layers:
            x = dense(x)
            if self.dropout_layer is not None:
                x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "depth": self.depth,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="keras_mtl")
class ConvTrunk(keras.layers.Layer):
    """`depth` stages of a 3x3 ReLU convolution and 2x2 max pooling.

    The first stage has `filters` filters and each next stage twice as many; a
    global average pool turns the last feature map into one vector per image.

    Args:
        filters: Filters of the first stage.
        depth: Number of stages.
        dropout: Dropout rate on the pooled features (0 disables it).
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:

    >>> trunk = ConvTrunk(filters=8, depth=2, name="trunk")
    >>> trunk(keras.ops.ones((4, 32, 32, 3))).shape
    (4, 16)
    """

    def __init__(self, filters=32, depth=3, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.depth = depth
        self.dropout = dropout
        self.stages = []
        for i in range(depth):
            self.stages.append(
                keras.layers.Conv2D(
                    filters * 2**i,
                    3,
                    padding="same",
                    activation="relu",
                    dtype=self.dtype_policy,
                    name=f"conv_{i}",
                )
            )
            self.stages.append(
                keras.layers.MaxPooling2D(2, dtype=self.dtype_policy, name=f"pool_{i}")
            )
        self.pool = keras.layers.GlobalAveragePooling2D(dtype=self.dtype_policy)
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout else None

    def build(self, input_shape):
        build_in_sequence(self.stages, input_shape)

    def call(self, inputs, training=None):
        x = inputs
        for layer in self.stages:
            x = layer(x)
        x = self.pool(x)
        if self.dropout_layer is not None:
            x = self.dropout_layer(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.filters * 2 ** (self.depth - 1))

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "depth": self.depth,
            "dropout": self.dropout,
        }
