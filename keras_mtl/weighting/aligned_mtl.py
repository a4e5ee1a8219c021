"""`aligned_mtl`: aligned principal components of the task gradients
(Senushkin et al., CVPR 2023, "Independent Component Alignment for Multi-Task
Learning").

With the task gradients on the shared parameters as the columns of `G` and
their Gram matrix `M = G^T G = V diag(lambda) V^T` (eigendecomposition),
Aligned-MTL replaces `G` by `G B` with

    B = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T

so that `(G B)^T (G B) = lambda_min I`: the aligned gradients are orthogonal
and of equal norm, the smallest singular value of `G`, and the system's
condition number is 1. The shared parameters step along `G B w`, with `w` the
tasks' compiled `loss_weights` (ones by default), that is `sum_i alpha_i g_i`
with `alpha = B w`. As in the authors' code, eigenvalues at or below
`lambda_max * K * eps(float32)` are dropped (the rank-deficient case:
parallel gradients, or a task without a gradient because the batch holds
none of its labels), and `lambda_min` is the smallest one kept.

The shared parameters are the Trunk and Head 1, which both losses reach
(`keras_mtl.weighting.shared_gradients`); Head 2's parameters get Loss 2's
gradient. Two tasks make `M` 2x2: its eigendecomposition (`tf.linalg.eigh`
in float64) runs inside the compiled step on every step, an exact solve
with no iterations. The logged `<task>_weight` is `alpha_i`.

Cost per step: that of `shared_gradients` plus the 2x2 Gram matrix (three dot
products over the shared parameters).
"""

import numpy as np
import tensorflow as tf

from keras_mtl.weighting.base import compiled_loss_weights
from keras_mtl.weighting.shared_gradients import SharedGradientWeighting

_FLOAT32_EPSILON = float(np.finfo("float32").eps)


def aligned_mtl_balance(gram):
    """Aligned-MTL's `B = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T` for `M`.

    Example:

    >>> aligned_mtl_balance(ops.array([[9.0, 0.0], [0.0, 1.0]]))
    [[1/3, 0], [0, 1]]: gradients of norms 3 and 1 both scaled to norm 1
    """
    gram = tf.cast(gram, tf.float64)
    eigenvalues, eigenvectors = tf.linalg.eigh((gram + tf.transpose(gram)) / 2.0)
    size = tf.cast(tf.shape(gram)[0], tf.float64)
    tolerance = tf.reduce_max(eigenvalues) * size * _FLOAT32_EPSILON
    kept = eigenvalues > tolerance
    smallest = tf.reduce_min(tf.where(kept, eigenvalues, np.inf))
    inverse_roots = tf.where(kept, tf.math.rsqrt(tf.where(kept, eigenvalues, 1.0)), 0.0)
    balance = (eigenvectors * inverse_roots) @ tf.transpose(eigenvectors)
    balance = tf.sqrt(tf.where(tf.reduce_any(kept), smallest, 0.0)) * balance
    return tf.cast(balance, tf.float32)


def aligned_mtl_alphas(g1, g2, preferences):
    """`alpha = B w`: the aligned combination's weights on `g1` and `g2`."""
    gradients = tf.stack([g1, g2])
    gram = tf.linalg.matmul(gradients, gradients, transpose_b=True)
    return tf.linalg.matvec(aligned_mtl_balance(gram), preferences)


class AlignedMTLWeighting(SharedGradientWeighting):
    """Aligned-MTL on the Trunk and Head 1 (see the module docstring).

    Args:
        task_names: The tasks in head order.

    Example:

    ```python
    model.set_weighting(AlignedMTLWeighting(["coarse", "fine"]))
    ```
    """

    method = "aligned_mtl"

    def loss_weights(self, model, losses=None, training=True):
        return compiled_loss_weights(model, self.task_names)

    def task_targets(self, model, losses, global_losses):
        # The preferences enter as `G B w`, after the alignment.
        return [losses[i] for i in range(len(self.task_names))]

    def combine(self, model, gradients, global_losses):
        alphas = aligned_mtl_alphas(*gradients, self.loss_weights(model))
        return alphas[0] * gradients[0] + alphas[1] * gradients[1], alphas
