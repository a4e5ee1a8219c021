"""`dwa`: Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019).

A task whose loss fell less over the last epoch gets more weight in the next:

    r_i = L_i(t-1) / L_i(t-2)        w_i(t) = K * softmax(r / T)_i

where `L_i(t)` is task i's mean training loss over epoch t (the unweighted
`<task>_loss` that Keras logs, already averaged over the replicas), `K` the
number of tasks and `T` the temperature (`weighting.dwa_temperature`). The
first two epochs use `w_i = 1`. A callback, which `MultiTaskModel.fit` adds,
updates the weights at the end of each epoch. Cost per step: none.
"""

import keras
import numpy as np
from keras import ops

from keras_mtl.weighting.base import Weighting, state_variable


def dwa_weights(previous, before_previous, temperature=2.0):
    """`K * softmax((L(t-1) / L(t-2)) / T)`: DWA's weights from two epochs' losses.

    Example:

    >>> dwa_weights([1.0, 1.0], [2.0, 1.0], temperature=1.0)
    array([0.755..., 1.244...])
    """
    ratios = np.asarray(previous, "float64") / np.asarray(before_previous, "float64")
    scores = np.exp((ratios - ratios.max()) / temperature)
    return len(ratios) * scores / scores.sum()


class DWAWeighting(Weighting):
    """Weights from the ratio of the last two epochs' losses.

    Args:
        task_names: The tasks in head order.
        temperature: `T`; larger values keep the weights closer to 1.

    Example:

    ```python
    model.set_weighting(DWAWeighting(["coarse", "fine"], temperature=2.0))
    ```
    """

    method = "dwa"

    def __init__(self, task_names, temperature=2.0):
        super().__init__(task_names)
        self.temperature = temperature

    def build_state(self, model):
        count = len(self.task_names)
        self.weights = state_variable([1.0] * count, "dwa_weights")
        # Row 0: the epoch before last, row 1: the last epoch.
        self.epoch_losses = state_variable([[0.0] * count] * 2, "dwa_epoch_losses")
        self.epochs_seen = state_variable(0.0, "dwa_epochs_seen")

    def state_variables(self):
        return [self.weights, self.epoch_losses, self.epochs_seen]

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}

    def loss_weights(self, model, losses, training=True):
        return ops.convert_to_tensor(self.weights)

    def end_epoch(self, losses):
        """Records an epoch's mean task losses and sets the next epoch's weights."""
        history = np.asarray(self.epoch_losses.numpy())
        history = np.stack([history[1], np.asarray(losses, "float32")])
        seen = int(self.epochs_seen.numpy()) + 1
        self.epoch_losses.assign(history)
        self.epochs_seen.assign(float(seen))
        if seen >= 2:
            weights = dwa_weights(history[1], history[0], self.temperature)
            self.weights.assign(weights.astype("float32"))

    def callbacks(self):
        return [DWAUpdate(self)]


class DWAUpdate(keras.callbacks.Callback):
    """Feeds each epoch's logged task losses to a `DWAWeighting`."""

    def __init__(self, weighting):
        super().__init__()
        self.weighting = weighting

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        keys = [f"{name}_loss" for name in self.weighting.task_names]
        missing = [key for key in keys if key not in logs]
        if missing:
            raise ValueError(
                f"DWA needs each task's training loss in the epoch logs; missing "
                f"{missing}. Received logs with keys: {sorted(logs)}"
            )
        self.weighting.end_epoch([float(logs[key]) for key in keys])
