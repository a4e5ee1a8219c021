"""`db_mtl`: dual balancing (Lin et al., 2023, "Dual-Balancing for Multi-Task
Learning", arXiv 2308.12029).

Loss-scale balancing: every task trains on its log-loss `log(L_i + eps)`, whose
gradient `grad L_i / (L_i + eps)` no longer depends on the loss's scale.
Gradient-magnitude balancing: on the shared parameters each task's log-loss
gradient `g_i` enters an exponential moving average

    h_i <- beta_t h_i + (1 - beta_t) g_i        beta_t = beta / t ** beta_sigma

(`t` the step, from 1; `h_i` starts at 0), and the shared parameters step along

    g = max_j ||h_j|| * sum_i h_i / ||h_i||

so every task contributes a direction of the largest task's norm. This is the
paper's Algorithm 1 with LibMTL's decaying `beta_t` (`beta_sigma = 0` keeps
`beta` fixed). The shared parameters are the Trunk and Head 1, which both
losses reach (`keras_mtl.weighting.shared_gradients`); Head 2's parameters get
the gradient of `log(L_2 + eps)`. The log makes the tasks' compiled
`loss_weights` irrelevant to training; they weight only the logged `loss`.
The logged `<task>_weight` is `max_j ||h_j|| / ||h_i||`, the factor on task
i's averaged gradient. The log-loss gradient on a replica is that of its share
of the loss divided by the global loss, so the replicas' gradients sum to the
global one. A step whose gradients overflowed (mixed precision) leaves the
averages and `t` alone.

State (saved with the model, never exported): `h`, `[2, P]` for the `P` shared
parameters, and `t`. Cost per step: that of `shared_gradients` plus a few
vector operations on the shared parameters; no solver.
"""

from keras import ops

from keras_mtl.weighting.base import compiled_loss_weights, state_variable
from keras_mtl.weighting.shared_gradients import (
    SharedGradientWeighting,
    all_finite,
    shared_parameter_count,
)

EPSILON = 1e-8


def db_mtl_average(averages, gradients, beta, beta_sigma, step):
    """The moving averages `h` after step `step` (from 1) with gradients `g`.

    Example:

    >>> db_mtl_average(ops.zeros((2, 1)), ops.ones((2, 1)), 0.9, 0.5, 4.0)
    # beta_4 = 0.9 / 2 = 0.45: h = 0.55 g
    """
    rate = beta / ops.power(ops.cast(step, "float32"), beta_sigma)
    return gradients + rate * (averages - gradients)


def db_mtl_combine(averages):
    """`max_j ||h_j|| * sum_i h_i / ||h_i||` and the factors `max_j ||h_j|| / ||h_i||`.

    Example:

    >>> db_mtl_combine(ops.array([[3.0, 0.0], [0.0, 1.0]]))
    ([3.0, 3.0], [1.0, 3.0])
    """
    norms = ops.norm(averages, axis=1)
    factors = ops.max(norms) / (norms + EPSILON)
    return ops.sum(factors[:, None] * averages, axis=0), factors


class DBMTLWeighting(SharedGradientWeighting):
    """DB-MTL's log losses and balanced gradient norms (see the module docstring).

    Args:
        task_names: The tasks in head order.
        beta: The moving average's rate `beta` in [0, 1).
        beta_sigma: The decay `beta_t = beta / t ** beta_sigma`.

    Example:

    ```python
    model.set_weighting(DBMTLWeighting(["coarse", "fine"], beta=0.9))
    ```
    """

    method = "db_mtl"

    def __init__(self, task_names, beta=0.9, beta_sigma=0.5):
        super().__init__(task_names)
        self.beta = beta
        self.beta_sigma = beta_sigma

    def build_state(self, model):
        size = shared_parameter_count(model)
        self.averages = state_variable(
            ops.zeros((len(self.task_names), size)), "db_mtl_gradient_averages"
        )
        self.steps = state_variable(0.0, "db_mtl_steps")

    def state_variables(self):
        return [self.averages, self.steps]

    def get_config(self):
        return {
            **super().get_config(),
            "beta": self.beta,
            "beta_sigma": self.beta_sigma,
        }

    def loss_weights(self, model, losses, training=True):
        return compiled_loss_weights(model, self.task_names)

    def task_targets(self, model, losses, global_losses):
        # grad log(L + eps) = grad L / (L + eps), with L the global loss.
        scales = 1.0 / (ops.cast(global_losses, losses.dtype) + EPSILON)
        return [scales[i] * losses[i] for i in range(len(self.task_names))]

    def combine(self, model, gradients, global_losses):
        finite = all_finite(gradients)
        step = self.steps + ops.cast(finite, "float32")
        averages = db_mtl_average(
            ops.convert_to_tensor(self.averages),
            ops.stack(gradients),
            self.beta,
            self.beta_sigma,
            ops.maximum(step, 1.0),
        )
        averages = ops.where(finite, averages, self.averages)
        self.averages.assign(averages)
        self.steps.assign(step)
        combined, factors = db_mtl_combine(averages)
        # An overflowed step passes its non-finite gradient on, so that the
        # LossScaleOptimizer skips it and lowers the scale.
        overflow = ops.sum(gradients[0] + gradients[1]) * 0.0
        return combined + ops.where(finite, 0.0, overflow), factors
