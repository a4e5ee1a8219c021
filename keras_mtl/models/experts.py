"""Experts and softmax gates, the parts of the gated-expert trunks (MMoE, PLE).

An expert is a small ReLU MLP; a gate is one `Dense` layer with a softmax over
the experts it mixes. `mix` returns the gate-weighted sum of the experts'
outputs. Images are flattened first, so gated trunks read any input.
"""

import keras
from keras import ops

from keras_mtl.models.trunk import MLPTrunk


def make_experts(count, units, depth, dropout, dtype_policy, prefix):
    """`count` MLP experts of `depth` layers of `units`, named `<prefix>_<i>`."""
    return [
        MLPTrunk(units, depth, dropout, dtype=dtype_policy, name=f"{prefix}_{i}")
        for i in range(count)
    ]


def make_gate(count, dtype_policy, name):
    """A softmax gate over `count` experts (its weights sum to 1 per row)."""
    return keras.layers.Dense(
        count, activation="softmax", dtype=dtype_policy, name=name
    )


def flat(inputs):
    """`inputs` as `(batch, features)`: images and other tensors are flattened."""
    if len(inputs.shape) == 2:
        return inputs
    return ops.reshape(inputs, (-1, _width(inputs.shape)))


def flat_shape(input_shape):
    return (input_shape[0], _width(input_shape))


def _width(shape):
    width = 1
    for size in shape[1:]:
        width *= size
    return width


def mix(gate_weights, expert_outputs):
    """`sum_k g_k e_k`: `(batch, experts)` weights times `experts` x `(batch, units)`."""
    stacked = ops.stack(expert_outputs, axis=1)  # (batch, experts, units)
    weights = ops.cast(ops.expand_dims(gate_weights, -1), stacked.dtype)
    return ops.sum(weights * stacked, axis=1)
