"""`AITMHead`: Head 2 with Adaptive Information Transfer (Xi et al., KDD 2021).

Head 2's tower reads task 2's representation and gives `q`; a transfer layer
maps Head 1's hidden features to `p`; the AIT module attends over the two,

    z = sum_{u in (p, q)} w_u h3(u),
    w_u = softmax_u(<h1(u), h2(u)> / sqrt(k)),

and the prediction is `sigmoid(dense(z))`. With `calibration > 0` the head
adds the paper's label constraint, `calibration * mean(max(p2 - p1, 0))`
(a conversion is never likelier than the click it needs), as an `add_loss`
term, which Keras divides by the replica count like its own losses (kept
with its replica: `keras_mtl.compat.replica_losses`).
"""

import keras
from keras import ops

from keras_mtl.compat.replica_losses import ReplicaLocalLosses
from keras_mtl.models.trunk import build_in_sequence


def attend(query, key, value):
    """`sum_u softmax_u(<query_u, key_u> / sqrt(k)) value_u` over axis 1.

    Args:
        query, key, value: `(batch, inputs, k)` tensors.

    Returns:
        `(mixed, weights)`: `(batch, k)` and `(batch, inputs)`.
    """
    scale = ops.sqrt(ops.cast(ops.shape(query)[-1], query.dtype))
    weights = ops.softmax(ops.sum(query * key, axis=-1) / scale, axis=-1)
    return ops.sum(ops.expand_dims(weights, -1) * value, axis=1), weights


@keras.saving.register_keras_serializable(package="keras_mtl")
class AITMHead(ReplicaLocalLosses, keras.layers.Layer):
    """Head 2 of an AITM link: tower, information transfer, prediction.

    Called on `[representation, head1_features, head1_prediction]`; returns
    `(features, prediction)` like `TaskHead`, `features` being the AIT
    module's output.

    Args:
        units: Width of the tower, the transfer and the attention (k).
        output_units: Width of the prediction (1 for a binary task).
        output_activation: Activation of the prediction (`"sigmoid"`).
        depth: Hidden layers of the tower.
        dropout: Dropout rate after each tower layer.
        calibration: Weight of the label constraint (0 disables it).
        stop_gradient: Whether to cut the gradient into the inputs.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`).
    """

    def __init__(
        self,
        units=64,
        output_units=1,
        output_activation="sigmoid",
        depth=1,
        dropout=0.0,
        calibration=0.0,
        stop_gradient=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = units
        self.output_units = output_units
        self.output_activation = output_activation
        self.depth = depth
        self.dropout = dropout
        self.calibration = calibration
        self.stop_gradient = stop_gradient
        policy = self.dtype_policy

        def dense(name, activation=None):
            return keras.layers.Dense(
                units, activation=activation, dtype=policy, name=name
            )

        self.tower = [dense(f"hidden_{i}", "relu") for i in range(depth)]
        self.transfer = dense("transfer", "relu")
        self.query, self.key, self.value = dense("h1"), dense("h2"), dense("h3")
        self.dropout_layer = keras.layers.Dropout(dropout) if dropout else None
        self.output_layer = keras.layers.Dense(
            output_units, activation=output_activation, dtype="float32", name="output"
        )

    def build(self, input_shape):
        representation, head1_features, _ = input_shape
        build_in_sequence(self.tower, representation)
        self.transfer.build(head1_features)
        k = (representation[0], self.units)
        for layer in (self.query, self.key, self.value, self.output_layer):
            layer.build(k)

    def transfer_weights(self, inputs):
        """The attention weights of `(p, q)`, `(batch, 2)`: transferred first."""
        return self._transfer(*inputs[:2], training=False)[1]

    def _transfer(self, representation, head1_features, training):
        q = ops.cast(representation, self.compute_dtype)
        for dense in self.tower:
            q = dense(q)
            if self.dropout_layer is not None:
                q = self.dropout_layer(q, training=training)
        p = self.transfer(ops.cast(head1_features, self.compute_dtype))
        both = ops.stack([p, q], axis=1)
        return attend(self.query(both), self.key(both), self.value(both))

    def call(self, inputs, training=None):
        representation, head1_features, head1_prediction = inputs
        if self.stop_gradient:
            representation = ops.stop_gradient(representation)
            head1_features = ops.stop_gradient(head1_features)
            head1_prediction = ops.stop_gradient(head1_prediction)
        z, _ = self._transfer(representation, head1_features, training)
        prediction = self.output_layer(z)
        if self.calibration:
            excess = ops.relu(prediction - ops.cast(head1_prediction, "float32"))
            self.add_replica_loss(self.calibration * ops.mean(excess))
        return z, prediction

    def compute_output_shape(self, input_shape):
        batch = tuple(input_shape[0][:-1])
        return (*batch, self.units), (*batch, self.output_units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "output_units": self.output_units,
            "output_activation": self.output_activation,
            "depth": self.depth,
            "dropout": self.dropout,
            "calibration": self.calibration,
            "stop_gradient": self.stop_gradient,
        }
