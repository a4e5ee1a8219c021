"""`stch`: smooth Tchebycheff scalarisation (Lin et al., ICML 2024, "Smooth
Tchebycheff Scalarization for Multi-Objective Optimization").

The Tchebycheff scalarisation `max_i w_i (f_i - z_i)` minimises the worst
task's distance to an ideal point `z`; its smooth version replaces the max by

    STCH = mu * log(sum_i exp(w_i (f_i - z_i) / mu))

(`mu`, `weighting.stch_mu`: the smaller, the closer to the max). As in the
paper's multi-task experiments (the authors' code in LibMTL), the objectives
are the log-losses `f_i = log(L_i + eps)` and the ideal point is
`z_i = log(n_i + eps)`, with `n_i` the mean global loss of task i over the
last warm-up epoch: the model first trains `weighting.stch_warmup_epochs`
epochs on `sum_i w_i log(L_i + eps)`, then on `K * STCH`. The preferences `w`
are the tasks' compiled `loss_weights` (ones by default).

One backward pass: STCH's gradient is `sum_i w_i p_i grad f_i` with
`p = softmax(w (f - z) / mu)`, so the step minimises `sum_i v_i L_i` with the
constant weights

    v_i = K p_i w_i / (L_i + eps)       (warm-up: v_i = w_i / (L_i + eps))

computed from the global losses (the logged `<task>_weight`). The sum and count
of the last warm-up epoch's losses and the number of epochs seen (a callback
counts them) are the state, saved with the model; a resumed run continues in
its phase. Cost per step: a few operations on K numbers; no solver.
"""

import keras
from keras import ops

from keras_mtl.weighting.base import Weighting, compiled_loss_weights, state_variable

EPSILON = 1e-8


def stch_weights(losses, ideal_losses, preferences, mu):
    """`v_i = K p_i w_i / (L_i + eps)`: the gradient of `K * STCH` in `L`.

    Example:

    >>> stch_weights(ops.array([1.0, 2.0]), ops.ones(2), ops.ones(2), 0.01)
    # p = softmax([0, log 2] / 0.01) ~ [0, 1]: v ~ [0, 2 / 2] = [0, 1]
    """
    losses = losses + EPSILON
    scores = preferences * (ops.log(losses) - ops.log(ideal_losses + EPSILON))
    shares = ops.softmax(scores / mu)
    count = ops.cast(ops.shape(losses)[0], losses.dtype)
    return count * shares * preferences / losses


def stch_objective(losses, ideal_losses, preferences, mu):
    """`K * mu * log(sum_i exp(w_i (log(L_i + eps) - log(n_i + eps)) / mu))`."""
    scores = preferences * (ops.log(losses + EPSILON) - ops.log(ideal_losses + EPSILON))
    count = ops.cast(ops.shape(losses)[0], losses.dtype)
    return count * mu * ops.logsumexp(scores / mu)


class STCHWeighting(Weighting):
    """Smooth Tchebycheff on log-losses after a warm-up (see the module docstring).

    Args:
        task_names: The tasks in head order.
        mu: The smoothing `mu` > 0.
        warmup_epochs: Epochs of summed log-losses before STCH (at least 1:
            the last one's mean losses are the ideal point).

    Example:

    ```python
    model.set_weighting(STCHWeighting(["coarse", "fine"], mu=1.0, warmup_epochs=2))
    ```
    """

    method = "stch"

    def __init__(self, task_names, mu=1.0, warmup_epochs=1):
        super().__init__(task_names)
        if warmup_epochs < 1:
            raise ValueError(
                "STCH needs at least one warm-up epoch, whose mean losses are its "
                f"ideal point. Received: warmup_epochs={warmup_epochs}"
            )
        self.mu = mu
        self.warmup_epochs = warmup_epochs

    def build_state(self, model):
        count = len(self.task_names)
        self.loss_sums = state_variable([0.0] * count, "stch_loss_sums")
        self.loss_count = state_variable(0.0, "stch_loss_count")
        self.epochs_seen = state_variable(0.0, "stch_epochs_seen")

    def state_variables(self):
        return [self.loss_sums, self.loss_count, self.epochs_seen]

    def get_config(self):
        return {
            **super().get_config(),
            "mu": self.mu,
            "warmup_epochs": self.warmup_epochs,
        }

    def ideal_losses(self):
        """`n_i`: the mean losses of the last warm-up epoch (1 before it ends)."""
        count = ops.convert_to_tensor(self.loss_count)
        return ops.where(count > 0, self.loss_sums / ops.maximum(count, 1.0), 1.0)

    def loss_weights(self, model, losses, training=True):
        preferences = compiled_loss_weights(model, self.task_names)
        losses = ops.cast(losses, "float32")
        warmup = preferences / (losses + EPSILON)
        tchebycheff = stch_weights(losses, self.ideal_losses(), preferences, self.mu)
        epochs = ops.convert_to_tensor(self.epochs_seen)
        return ops.where(epochs >= float(self.warmup_epochs), tchebycheff, warmup)

    def update(self, model, losses):
        epochs = ops.convert_to_tensor(self.epochs_seen)
        last_warmup = ops.equal(epochs, float(self.warmup_epochs - 1))
        added = ops.cast(last_warmup, "float32")
        self.loss_sums.assign_add(added * ops.cast(losses, "float32"))
        self.loss_count.assign_add(added)

    def end_epoch(self):
        """Counts a finished epoch (the phase follows from the count)."""
        self.epochs_seen.assign_add(1.0)

    def callbacks(self):
        return [STCHEpochs(self)]


class STCHEpochs(keras.callbacks.Callback):
    """Tells an `STCHWeighting` when an epoch ends."""

    def __init__(self, weighting):
        super().__init__()
        self.weighting = weighting

    def on_epoch_end(self, epoch, logs=None):
        self.weighting.end_epoch()
