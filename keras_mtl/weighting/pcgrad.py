"""`pcgrad`: projecting conflicting gradients (Yu et al., NeurIPS 2020).

On the shared parameters (the Trunk and Head 1, which both losses reach), the
two tasks' gradients `g1`, `g2` are compared; when they conflict
(`g1 . g2 < 0`) each is projected onto the normal plane of the other:

    g1' = g1 - (g1 . g2) / |g2|^2 * g2        g2' = g2 - (g1 . g2) / |g1|^2 * g1

and the shared parameters step along `g1' + g2'`. Head 2's parameters get Loss
2's gradient as usual. The task losses are weighted by the compiled
`loss_weights` (the tasks' `weight`) before the projection. With two tasks the
order of the projections does not matter. The dot products use the global
gradients (summed over replicas first).

Cost per step: two backward passes over the shared blocks (one per task)
instead of one, an all-reduce of both tasks' shared gradients, and the
projection (a few vector operations on the shared parameters).
"""

import math

import keras
import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import (
    Weighting,
    additional_losses,
    compiled_loss_weights,
    global_sum,
    scale_for_replicas,
    track_total_loss,
)


def project_conflicting(g1, g2):
    """PCGrad's projection of two flat gradients; unchanged when they agree.

    Example:

    >>> project_conflicting(ops.array([1.0, 0.0]), ops.array([-1.0, 1.0]))
    ([0.5, 0.5], [0.0, 1.0])
    """
    dot = ops.sum(g1 * g2)
    conflict = ops.minimum(dot, 0.0)
    g1_projected = g1 - tf.math.divide_no_nan(conflict, ops.sum(g2 * g2)) * g2
    g2_projected = g2 - tf.math.divide_no_nan(conflict, ops.sum(g1 * g1)) * g1
    return g1_projected, g2_projected


def shared_variable_indices(model):
    """Positions in `model.trainable_variables` of the Trunk's and Head 1's."""
    shared = {
        id(v)
        for name in ("trunk", "head1")
        for v in model.get_layer(name).trainable_variables
    }
    return [i for i, v in enumerate(model.trainable_variables) if id(v) in shared]


def _flatten(tensors):
    return ops.concatenate([ops.reshape(t, [-1]) for t in tensors], axis=0)


def _unflatten(flat, like):
    shapes = [tuple(t.shape) for t in like]
    pieces = tf.split(flat, [math.prod(shape) for shape in shapes])
    return [ops.reshape(p, s) for p, s in zip(pieces, shapes, strict=True)]


class PCGradWeighting(Weighting):
    """PCGrad on the Trunk and Head 1 (see the module docstring).

    Args:
        task_names: The tasks in head order.

    Example:

    ```python
    model.set_weighting(PCGradWeighting(["coarse", "fine"]))
    ```
    """

    method = "pcgrad"

    def loss_weights(self, model, losses=None, training=True):
        return compiled_loss_weights(model, self.task_names)

    def train_step(self, model, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        optimizer = model.optimizer
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x, training=True)
            losses = self.stacked_losses(model, y, y_pred, sample_weight)
            weights = self.loss_weights(model)
            total = self.total_loss(model, losses, weights)
            track_total_loss(model, total, x)
            task_targets = [
                optimizer.scale_loss(weights[i] * losses[i]) for i in (0, 1)
            ]
            extra = additional_losses(model)
            if extra is not None:
                extra = optimizer.scale_loss(extra)
        variables = model.trainable_variables
        # The tf.Variables: TensorFlow makes the zeros of unconnected ones itself.
        sources = [v.value for v in variables]
        shared_indices = shared_variable_indices(model)
        shared = [sources[i] for i in shared_indices]
        zero = tf.UnconnectedGradients.ZERO
        g1 = tape.gradient(task_targets[0], shared, unconnected_gradients=zero)
        g2_all = tape.gradient(task_targets[1], sources, unconnected_gradients=zero)
        extra_gradients = (
            tape.gradient(extra, sources, unconnected_gradients=zero)
            if extra is not None
            else None
        )
        del tape
        g2 = [g2_all[i] for i in shared_indices]
        p1, p2 = project_conflicting(global_sum(_flatten(g1)), global_sum(_flatten(g2)))
        # Global values, the same on every replica: the optimizer sums them.
        combined = _unflatten(scale_for_replicas(p1 + p2), shared)
        gradients = list(g2_all)
        for i, gradient in zip(shared_indices, combined, strict=True):
            gradients[i] = gradient
        if extra_gradients is not None:
            gradients = [g + e for g, e in zip(gradients, extra_gradients, strict=True)]
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {**logs, **self.weight_logs(weights)}
