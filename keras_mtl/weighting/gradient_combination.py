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

import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import compiled_loss_weights
from keras_mtl.weighting.shared_gradients import SharedGradientWeighting

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


class GradientCombinationWeighting(SharedGradientWeighting):
    """Base class of the methods that combine the shared task gradients with
    coefficients solved from their Gram matrix.

    A subclass defines `coefficients(gram)`; `nash_mtl` also overrides
    `directions` (which gradients are combined) and `finish_step` (its state).
    The training step is `SharedGradientWeighting`'s.

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

    def finish_step(self, weights):
        """Updates the method's state after the step (`weights` as logged)."""

    def combine(self, model, gradients, global_losses):
        first, second = gradients
        coefficients, weights = self.coefficients(gram_matrix(first, second))
        update = coefficients[0] * first + coefficients[1] * second
        if self.max_norm > 0:
            update = update * ops.minimum(
                1.0,
                tf.math.divide_no_nan(
                    ops.cast(self.max_norm, "float32"), ops.norm(update)
                ),
            )
        self.finish_step(weights)
        loss_weights = self.loss_weights(model)
        return update, loss_weights * ops.cast(weights, loss_weights.dtype)
