"""`uncertainty`: learned task log-variances (Kendall, Gal and Cipolla, 2018).

Each task has a learned log-variance `s_i = log(sigma_i^2)`, and the model
minimises

    total = sum_i 0.5 * exp(-s_i) * L_i + log(1 + exp(s_i))

the positive-regulariser form of Liebel and Koerner (2018): the regulariser is
`log(1 + sigma_i^2)` instead of Kendall's `log(sigma_i)`. Kendall's form
`exp(-s_i) L_i + s_i` has no lower bound: when a task's loss nears zero its
`s_i` runs to minus infinity and so does the total. Here both terms are
positive, so the total is never below zero, and a task whose loss vanishes
gets a large but finite weight.

The weights are `w_i = 0.5 * exp(-s_i)` (0.5 at the start). The log-variances
follow the gradient of `total` with Adam at
`weighting.uncertainty_learning_rate`, computed on the global batch's losses.
Cost per step: a few scalar operations (no extra pass over the model).
"""

import keras
import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import Weighting, apply_own_gradients, state_variable


def uncertainty_weights(log_variances):
    """`0.5 * exp(-s_i)`: the weight of each task's loss."""
    return 0.5 * ops.exp(-log_variances)


def uncertainty_total(losses, log_variances):
    """`sum_i 0.5 exp(-s_i) L_i + log(1 + exp(s_i))` for losses `L` and `s`.

    Example:

    >>> float(uncertainty_total(ops.array([2.0, 0.0]), ops.array([0.0, 0.0])))
    2.386...
    """
    regularizer = ops.softplus(log_variances)
    return ops.sum(uncertainty_weights(log_variances) * losses + regularizer)


class UncertaintyWeighting(Weighting):
    """Learned log-variances in the bounded form (see the module docstring).

    Args:
        task_names: The tasks in head order.
        learning_rate: Adam's learning rate for the log-variances.

    Example:

    ```python
    model.set_weighting(UncertaintyWeighting(["coarse", "fine"]))
    model.fit(data, epochs=3)  # logs coarse_weight, fine_weight
    ```
    """

    method = "uncertainty"

    def __init__(self, task_names, learning_rate=0.01):
        super().__init__(task_names)
        self.learning_rate = learning_rate

    def build_state(self, model):
        self.log_variances = state_variable(
            [0.0] * len(self.task_names), "log_variances", trainable=True
        )
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        self.optimizer.build([self.log_variances])

    def state_variables(self):
        return [self.log_variances]

    def get_config(self):
        return {**super().get_config(), "learning_rate": self.learning_rate}

    def loss_weights(self, model, losses, training=True):
        return uncertainty_weights(ops.convert_to_tensor(self.log_variances))

    def regularizer(self):
        return ops.sum(ops.softplus(ops.convert_to_tensor(self.log_variances)))

    def update(self, model, losses):
        with tf.GradientTape() as tape:
            total = uncertainty_total(losses, self.log_variances)
        gradients = tape.gradient(total, [self.log_variances])
        apply_own_gradients(self.optimizer, gradients, [self.log_variances])
