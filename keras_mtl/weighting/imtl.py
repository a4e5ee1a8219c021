"""`imtl`: impartial multi-task learning (Liu et al., ICLR 2021, "Towards
Impartial Multi-task Learning").

IMTL-G: the shared parameters step along `g = sum_i alpha_i g_i` with
`sum_i alpha_i = 1`, chosen so that `g` has the same projection onto every
task's unit gradient `u_i = g_i / ||g_i||`. The paper's closed form for K tasks
is `alpha_{2..K} = g_1 U^T (D U^T)^-1` with rows `U_j = u_1 - u_j` and
`D_j = g_1 - g_j`. With two tasks, `g . (u_1 - u_2) = 0` gives

    alpha_2 = g_1 . (u_1 - u_2) / ((g_1 - g_2) . (u_1 - u_2))
            = ||g_1|| / (||g_1|| + ||g_2||)        alpha_1 = 1 - alpha_2

(the factor `1 - cos(g_1, g_2)` cancels), so `g = ||g_1|| ||g_2|| /
(||g_1|| + ||g_2||) * (u_1 + u_2)`: no matrix to invert, and defined for
aligned gradients too, where the closed form divides 0 by 0. A task without
a gradient (no label in the batch) has no direction to be impartial to: then
`alpha = [1, 1]` and the other task's gradient is used as it is. The gradients
are those on the shared parameters, the Trunk and Head 1, which both losses
reach (`keras_mtl.weighting.shared_gradients`); Head 2's parameters get Loss
2's gradient. The logged `<task>_weight` is `alpha_i`.

IMTL-L (`weighting.imtl_loss_scaling = true`): each task's loss is scaled by a
learned `exp(s_i)`, trained on `exp(s_i) L_i - s_i` (the gradients above are
then those of `exp(s_i) L_i`). `s` follows that objective's gradient on the
global losses, `exp(s_i) L_i - 1`, with Adam at
`weighting.imtl_learning_rate`, and the logged `loss` carries `- s_i` divided
by the replica count, as `uncertainty` does. The tasks' compiled
`loss_weights` multiply the losses in both forms.

Cost per step: that of `shared_gradients` and two norms; no solver.
"""

import keras
from keras import ops

from keras_mtl.weighting.base import (
    apply_own_gradients,
    compiled_loss_weights,
    state_variable,
)
from keras_mtl.weighting.shared_gradients import SharedGradientWeighting


def imtl_alphas(g1, g2):
    """IMTL-G's `alpha` for two flat gradients: `[||g2||, ||g1||] / (sum)`.

    Example:

    >>> imtl_alphas(ops.array([2.0, 0.0]), ops.array([0.0, 1.0]))
    [1/3, 2/3]: g = [2/3, 2/3], projection 2/3 on both unit vectors
    """
    norm1, norm2 = ops.norm(g1), ops.norm(g2)
    both = ops.logical_and(norm1 > 0.0, norm2 > 0.0)
    impartial = ops.stack([norm2, norm1]) / ops.maximum(norm1 + norm2, 1e-30)
    return ops.where(both, impartial, ops.ones(2))


def imtl_scale_gradient(log_scales, losses):
    """The gradient of `sum_i exp(s_i) L_i - s_i` with respect to `s`.

    Example:

    >>> imtl_scale_gradient(ops.zeros(2), ops.array([2.0, 0.5]))  # [1.0, -0.5]
    """
    return ops.exp(log_scales) * losses - 1.0


class IMTLWeighting(SharedGradientWeighting):
    """IMTL-G, optionally with IMTL-L's loss scales (see the module docstring).

    Args:
        task_names: The tasks in head order.
        loss_scaling: Whether to learn IMTL-L's loss scales `exp(s_i)`.
        learning_rate: Adam's learning rate for `s` (with `loss_scaling`).

    Example:

    ```python
    model.set_weighting(IMTLWeighting(["coarse", "fine"], loss_scaling=True))
    ```
    """

    method = "imtl"

    def __init__(self, task_names, loss_scaling=False, learning_rate=0.01):
        super().__init__(task_names)
        self.loss_scaling = loss_scaling
        self.learning_rate = learning_rate

    def build_state(self, model):
        if not self.loss_scaling:
            return
        self.log_scales = state_variable(
            [0.0] * len(self.task_names), "imtl_log_scales", trainable=True
        )
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        self.optimizer.build([self.log_scales])

    def state_variables(self):
        return [self.log_scales] if self.loss_scaling else []

    def get_config(self):
        return {
            **super().get_config(),
            "loss_scaling": self.loss_scaling,
            "learning_rate": self.learning_rate,
        }

    def loss_weights(self, model, losses, training=True):
        weights = compiled_loss_weights(model, self.task_names)
        if self.loss_scaling:
            weights = weights * ops.exp(ops.convert_to_tensor(self.log_scales))
        return weights

    def regularizer(self):
        if not self.loss_scaling:
            return None
        return -ops.sum(ops.convert_to_tensor(self.log_scales))

    def combine(self, model, gradients, global_losses):
        alphas = imtl_alphas(*gradients)
        return alphas[0] * gradients[0] + alphas[1] * gradients[1], alphas

    def update(self, model, losses):
        if not self.loss_scaling:
            return
        weighted = compiled_loss_weights(model, self.task_names) * ops.cast(
            losses, "float32"
        )
        gradient = imtl_scale_gradient(ops.convert_to_tensor(self.log_scales), weighted)
        apply_own_gradients(self.optimizer, [gradient], [self.log_scales])
