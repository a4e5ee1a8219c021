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

import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import compiled_loss_weights
from keras_mtl.weighting.shared_gradients import SharedGradientWeighting


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


class PCGradWeighting(SharedGradientWeighting):
    """PCGrad on the Trunk and Head 1 (see the module docstring); the
    training step is `SharedGradientWeighting`'s.

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

    def combine(self, model, gradients, global_losses):
        p1, p2 = project_conflicting(*gradients)
        return p1 + p2, self.loss_weights(model)
