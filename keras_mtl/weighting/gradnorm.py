"""`gradnorm`: gradient normalisation (Chen et al., ICML 2018).

GradNorm learns weights that give each task a gradient of a size matched to
how fast it trains. On the last shared layer `W` (Head 1's last hidden layer:
both losses reach it, Loss 2 through Head 2) it measures
`G_i = ||grad_W w_i L_i||`, the loss ratios `r_i = (L_i / L_i(0)) / mean_j(..)`
against the first step's losses, and moves the weights down the gradient of

    L_grad = sum_i | G_i - mean_j(G_j) * r_i ** alpha |

with the target treated as a constant (`weighting.gradnorm_alpha`: how strongly
slow tasks are pushed). The weights are `w = K * softmax(xi)` (positive, summing
to K, the renormalisation of the paper built in), and the logits `xi` follow
Adam at `weighting.gradnorm_learning_rate`. Norms, ratios and the update use
the global batch (gradients summed over replicas first).

Cost per step: besides the usual backward pass of `sum_i w_i L_i`, one
backward pass of each task's loss down to `W` only (Head 2 and Head 1's output
layer; the Trunk is not visited), and an all-reduce of `W`'s two gradients.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import (
    Weighting,
    apply_own_gradients,
    global_sum,
    state_variable,
    track_total_loss,
)


def gradnorm_weights(logits):
    """`K * softmax(logits)`: positive weights that sum to the task count."""
    return ops.cast(ops.shape(logits)[0], "float32") * ops.softmax(logits)


def gradnorm_objective(logits, gradient_norms, loss_ratios, alpha):
    """`sum_i |w_i g_i - mean_j(w_j g_j) r_i^alpha|` with a constant target.

    Args:
        logits: The weights' logits `xi`.
        gradient_norms: `g_i = ||grad_W L_i||`, the unweighted norms.
        loss_ratios: `L_i(t) / L_i(0)`.
        alpha: The asymmetry `alpha`.
    """
    norms = gradnorm_weights(logits) * gradient_norms
    relative = loss_ratios / ops.mean(loss_ratios)
    target = ops.stop_gradient(ops.mean(norms) * relative**alpha)
    return ops.sum(ops.abs(norms - target))


def gradnorm_logit_gradient(logits, gradient_norms, loss_ratios, alpha):
    """The gradient of `gradnorm_objective` with respect to the logits."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        objective = gradnorm_objective(logits, gradient_norms, loss_ratios, alpha)
    return tape.gradient(objective, logits)


def last_shared_layer(model):
    """Head 1's last hidden layer: the last layer both losses reach."""
    return model.get_layer("head1").hidden_layers[-1]


def _flat(gradients):
    return ops.concatenate([ops.reshape(g, [-1]) for g in gradients], axis=0)


class GradNormWeighting(Weighting):
    """GradNorm's learned weights (see the module docstring).

    Args:
        task_names: The tasks in head order.
        alpha: The asymmetry `alpha` (0: equal gradient norms).
        learning_rate: Adam's learning rate for the weights' logits.

    Example:

    ```python
    model.set_weighting(GradNormWeighting(["coarse", "fine"], alpha=1.5))
    ```
    """

    method = "gradnorm"

    def __init__(self, task_names, alpha=1.5, learning_rate=0.01):
        super().__init__(task_names)
        self.alpha = alpha
        self.learning_rate = learning_rate

    def build_state(self, model):
        count = len(self.task_names)
        self.logits = state_variable([0.0] * count, "gradnorm_logits", trainable=True)
        self.initial_losses = state_variable([1.0] * count, "gradnorm_initial_losses")
        self.has_initial = state_variable(0.0, "gradnorm_has_initial")
        self.optimizer = keras.optimizers.Adam(self.learning_rate)
        self.optimizer.build([self.logits])

    def state_variables(self):
        return [self.logits, self.initial_losses, self.has_initial]

    def get_config(self):
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "learning_rate": self.learning_rate,
        }

    def loss_weights(self, model, losses, training=True):
        return gradnorm_weights(ops.convert_to_tensor(self.logits))

    def train_step(self, model, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x, training=True)
            losses = self.stacked_losses(model, y, y_pred, sample_weight)
            task_losses = [losses[i] for i in range(len(self.task_names))]
            with tape.stop_recording():
                global_losses = global_sum(ops.stop_gradient(losses))
                weights = ops.stop_gradient(self.loss_weights(model, global_losses))
            total = self.total_loss(model, losses, weights)
            track_total_loss(model, total, x)
            scaled = model.optimizer.scale_loss(total)
        variables = model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        shared = last_shared_layer(model).trainable_variables
        task_gradients = [
            global_sum(_flat(tape.gradient(loss, shared))) for loss in task_losses
        ]
        del tape
        model.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self._update(global_losses, ops.stack([ops.norm(g) for g in task_gradients]))
        logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {**logs, **self.weight_logs(weights)}

    def _update(self, losses, gradient_norms):
        initial = ops.where(self.has_initial > 0, self.initial_losses, losses)
        self.initial_losses.assign(initial)
        self.has_initial.assign(1.0)
        gradient = gradnorm_logit_gradient(
            self.logits, gradient_norms, losses / initial, self.alpha
        )
        apply_own_gradients(self.optimizer, [gradient], [self.logits])
