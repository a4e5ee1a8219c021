"""`famo`: Fast Adaptive Multitask Optimization (Liu et al., NeurIPS 2023).

FAMO keeps logits `xi` and task shares `z = softmax(xi)`. The model minimises
`sum_i z_i log(L_i)` rescaled by `c = sum_i z_i / L_i`, whose gradient is that of
`sum_i w_i L_i` with

    w_i = z_i / (c * L_i)           (the weights sum to 1)

so a task with a small loss is not drowned by one with a large loss. After a
step the logits learn from how much each log-loss fell,
`delta_i = log L_i(before) - log L_i(after)`: their gradient is
`J_softmax(xi)^T delta` plus `gamma * xi` (`weighting.famo_gamma`, the
reference implementation's weight decay), applied with Adam at
`weighting.famo_learning_rate`. Tasks that improved less gain weight.

The paper measures `L(after)` with a second forward pass on the same batch.
keras-mtl uses the next step's losses instead (FAMO's O(1) cost: no extra
pass, the global batch losses that the step computes anyway), so the logits
update at the start of each step from the change since the previous step.
Losses are shifted by 1e-8 before logs; the minimum losses are taken as 0.
Cost per step: a few operations on K numbers.
"""

import keras
from keras import ops

from keras_mtl.weighting.base import Weighting, apply_own_gradients, state_variable

EPSILON = 1e-8


def famo_weights(logits, losses):
    """`w_i = z_i / (c L_i)` with `z = softmax(logits)`, `c = sum_i z_i / L_i`.

    Example:

    >>> famo_weights(ops.zeros(2), ops.array([1.0, 3.0]))  # [0.75, 0.25]
    """
    shares = ops.softmax(logits)
    losses = losses + EPSILON
    return shares / (ops.sum(shares / losses) * losses)


def famo_logit_gradient(logits, previous_losses, losses):
    """FAMO's gradient for the logits: `J_softmax(logits)^T delta`.

    `delta_i = log L_i(previous) - log L_i(now)`, the fall of each log-loss.
    The softmax Jacobian `diag(z) - z z^T` is symmetric, so the product is
    `z * (delta - sum_j z_j delta_j)`.
    """
    delta = ops.log(previous_losses + EPSILON) - ops.log(losses + EPSILON)
    shares = ops.softmax(logits)
    return shares * (delta - ops.sum(shares * delta))


class FAMOWeighting(Weighting):
    """FAMO's adaptive weights (see the module docstring).

    Args:
        task_names: The tasks in head order.
        learning_rate: Adam's learning rate for the logits.
        gamma: Weight decay on the logits.

    Example:

    ```python
    model.set_weighting(FAMOWeighting(["coarse", "fine"]))
    ```
    """

    method = "famo"

    def __init__(self, task_names, learning_rate=0.025, gamma=0.01):
        super().__init__(task_names)
        self.learning_rate = learning_rate
        self.gamma = gamma

    def build_state(self, model):
        count = len(self.task_names)
        self.logits = state_variable([0.0] * count, "famo_logits", trainable=True)
        self.previous_losses = state_variable([0.0] * count, "famo_previous_losses")
        self.has_previous = state_variable(0.0, "famo_has_previous")
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        self.optimizer.build([self.logits])

    def state_variables(self):
        return [self.logits, self.previous_losses, self.has_previous]

    def get_config(self):
        return {
            **super().get_config(),
            "learning_rate": self.learning_rate,
            "gamma": self.gamma,
        }

    def observe(self, model, losses):
        logits = ops.convert_to_tensor(self.logits)
        gradient = famo_logit_gradient(logits, self.previous_losses, losses)
        # Nothing to learn from before the first step: Adam's first update of
        # a zero gradient (and zero logits) is zero.
        gradient = gradient * self.has_previous + self.gamma * logits
        apply_own_gradients(self.optimizer, [gradient], [self.logits])
        self.previous_losses.assign(losses)
        self.has_previous.assign(1.0)

    def loss_weights(self, model, losses, training=True):
        return famo_weights(ops.convert_to_tensor(self.logits), losses)
