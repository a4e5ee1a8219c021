"""What `fairgrad`, `nash_mtl` and `cagrad` share: the shared blocks step
along a combination `c_1 g_1 + c_2 g_2` of the two tasks' gradients, with the
coefficients solved from their Gram matrix.

The shared blocks are the Trunk and Head 1: both losses reach them (Loss 2
through Head 2, which reads Head 1's hidden features). `g_i` is the gradient
there of `lambda_i L_i` (`lambda_i` the compiled `loss_weights`, the tasks'
`weight`), summed over the replicas first, so every replica solves the same
two-task problem from the global Gram matrix

    G^T G = [[g1 . g1, g1 . g2], [g1 . g2, g2 . g2]]

in float64, inside the compiled step, and applies the same update (divided by
the replica count, as `apply_own_gradients` does). Head 2 (and any variable
outside the Trunk and Head 1) gets the gradient of `sum_i lambda_i L_i`, as
with `static`: Loss 2's. The logged `loss` is `sum_i lambda_i L_i` too (as
for `pcgrad`, so that it compares with `val_loss`); `<task>_weight` logs the
coefficient of each unweighted loss's gradient in the shared update,
`lambda_i c_i`, before any clipping.

Mixed precision: the gradients come from loss-scaled losses; the solvers see
the Gram matrix divided by the loss scale squared (the true gradients'), and
the update, still scaled, goes to the `LossScaleOptimizer`, which unscales it
and skips the step when anything overflowed.

`max_norm > 0` clips the global norm of the shared update to `max_norm`, as
the reference implementations of Nash-MTL and FairGrad do (1.0 there).
"""

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
from keras_mtl.weighting.pcgrad import _flatten, _unflatten, shared_variable_indices

# A squared gradient norm at or below this counts as no gradient: the task
# gets weight 0 (its gradient adds nothing to the update whatever its weight).
ZERO_GRADIENT = 1e-30
# Gradients with cos(g1, g2) within this of -1 count as exactly opposed.
OPPOSED = 1e-6


def gram_entries(gram):
    """`(a, m, b) = (g1.g1, g1.g2, g2.g2)` in float64, zero tasks zeroed."""
    gram = ops.cast(gram, "float64")
    a, m, b = gram[0, 0], gram[0, 1], gram[1, 1]
    zero1, zero2 = a <= ZERO_GRADIENT, b <= ZERO_GRADIENT
    m = ops.where(zero1 | zero2, ops.zeros_like(m), m)
    a = ops.where(zero1, ops.zeros_like(a), a)
    b = ops.where(zero2, ops.zeros_like(b), b)
    return a, m, b


def opposed(a, m, b):
    """Whether the gradients point in opposite directions (`cos = -1`)."""
    return (m < 0) & (m * m >= (1.0 - OPPOSED) * a * b)


def gram_matrix(first, second):
    """The Gram matrix `[[f1.f1, f1.f2], [f1.f2, f2.f2]]` of two flat vectors."""
    cross = ops.sum(first * second)
    return ops.stack(
        [
            ops.stack([ops.sum(first * first), cross]),
            ops.stack([cross, ops.sum(second * second)]),
        ]
    )


class GradientCombinationWeighting(Weighting):
    """Base class of the methods that combine the shared task gradients.

    A subclass defines `coefficients(gram)`; `nash_mtl` also overrides
    `directions` (which gradients are combined) and `finish_step` (its state).

    Args:
        task_names: The tasks in head order.
        max_norm: Clip the global norm of the shared update to this (0: no
            clipping).
    """

    def __init__(self, task_names, max_norm=0.0):
        super().__init__(task_names)
        self.max_norm = max_norm

    def loss_weights(self, model, losses=None, training=True):
        return compiled_loss_weights(model, self.task_names)

    def coefficients(self, gram):
        """`(c, w)`: the coefficients of the two directions and the weights
        of the tasks' gradients to log, from the (unscaled) global Gram matrix
        of the directions."""
        raise NotImplementedError

    def directions(self, tape, targets, shared):
        """This replica's two gradients on the shared variables that are
        combined: by default each task's (`targets` are the scaled
        `lambda_i L_i`)."""
        zero = tf.UnconnectedGradients.ZERO
        return tuple(
            tape.gradient(t, shared, unconnected_gradients=zero) for t in targets
        )

    def finish_step(self, weights):
        """Updates the method's state after the step (`weights` as logged)."""

    def shared_update(self, optimizer, first, second):
        """This replica's share of the shared update, and the task weights."""
        first, second = global_sum([first, second])
        scale = ops.cast(optimizer.scale_loss(ops.ones((), "float32")), "float32")
        gram = gram_matrix(first, second) / (scale * scale)
        coefficients, weights = self.coefficients(gram)
        update = coefficients[0] * first + coefficients[1] * second
        if self.max_norm > 0:
            norm = ops.norm(update) / scale
            update = update * ops.minimum(
                1.0, tf.math.divide_no_nan(ops.cast(self.max_norm, "float32"), norm)
            )
        # Global values, the same on every replica: the optimizer sums them.
        return scale_for_replicas(update), weights

    def train_step(self, model, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        optimizer = model.optimizer
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x, training=True)
            losses = self.stacked_losses(model, y, y_pred, sample_weight)
            loss_weights = self.loss_weights(model)
            track_total_loss(model, self.total_loss(model, losses, loss_weights), x)
            targets = [
                optimizer.scale_loss(loss_weights[i] * losses[i]) for i in (0, 1)
            ]
            extra = additional_losses(model)
            if extra is not None:
                extra = optimizer.scale_loss(extra)
        variables = model.trainable_variables
        # The tf.Variables: TensorFlow makes the zeros of unconnected ones itself.
        sources = [v.value for v in variables]
        shared_indices = shared_variable_indices(model)
        other_indices = sorted(set(range(len(sources))) - set(shared_indices))
        shared = [sources[i] for i in shared_indices]
        zero = tf.UnconnectedGradients.ZERO
        everything = targets if extra is None else [*targets, extra]
        gradients = [None] * len(sources)
        if other_indices:
            others = [sources[i] for i in other_indices]
            other_gradients = tape.gradient(
                everything, others, unconnected_gradients=zero
            )
            for i, gradient in zip(other_indices, other_gradients, strict=True):
                gradients[i] = gradient
        extra_shared = (
            tape.gradient(extra, shared, unconnected_gradients=zero)
            if extra is not None
            else [0.0] * len(shared)
        )
        first, second = self.directions(tape, targets, shared)
        del tape
        update, weights = self.shared_update(
            optimizer, _flatten(first), _flatten(second)
        )
        for i, gradient, extra_gradient in zip(
            shared_indices, _unflatten(update, shared), extra_shared, strict=True
        ):
            gradients[i] = gradient + extra_gradient
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.finish_step(weights)
        logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {**logs, **self.weight_logs(loss_weights * weights)}
