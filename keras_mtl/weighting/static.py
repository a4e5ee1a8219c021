"""`static`: Keras' own compile-time `loss_weights` (the default).

The tasks' `weight` values are compiled as `loss_weights={task: weight}` and
Keras trains exactly as it does without keras-mtl: this method runs
`keras.Model.train_step` and `compute_loss` unchanged and only adds each
task's weight to the logs (`<task>_weight`). Cost: none.
"""

import keras

from keras_mtl.weighting.base import Weighting, compiled_loss_weights


class StaticWeighting(Weighting):
    """Fixed weights: the compiled `loss_weights`.

    Args:
        task_names: The tasks in head order.

    Example:

    ```python
    model.set_weighting(StaticWeighting(["coarse", "fine"]))
    ```
    """

    method = "static"

    def loss_weights(self, model, losses=None, training=True):
        return compiled_loss_weights(model, self.task_names)

    def train_step(self, model, data):
        logs = keras.Model.train_step(model, data)
        return {**logs, **self.weight_logs(self.loss_weights(model))}

    def compute_loss(self, model, x, y, y_pred, sample_weight=None, training=True):
        return keras.Model.compute_loss(
            model, x, y, y_pred, sample_weight=sample_weight, training=training
        )
