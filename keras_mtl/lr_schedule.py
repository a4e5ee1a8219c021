"""`train.lr_schedule`: the learning rate over epochs, with Keras' own parts.

| `train.lr_schedule` | callback | the learning rate |
|---|---|---|
| `none` (default) | none | `train.learning_rate` throughout |
| `cosine` | `keras.callbacks.LearningRateScheduler` of `keras.optimizers.schedules.CosineDecay` | from `train.learning_rate` at epoch 0 down a half cosine to 0 after `train.epochs` epochs |
| `plateau` | `keras.callbacks.ReduceLROnPlateau` on `train.monitor` | times `train.lr_plateau_factor` after `train.lr_plateau_patience` epochs without a better `train.monitor` |

The two-head model (`keras_mtl.train`) and the single-task baselines
(`keras_mtl.train_baselines`) get the same schedule, each on its own
monitored log. With early stopping, `plateau` lowers the rate before the run
stops when its patience is shorter than `train.early_stopping_patience`.
"""

import keras


def schedule_callbacks(train, monitor, mode="auto"):
    """The callbacks of `train.lr_schedule` (a list, empty for `none`).

    Args:
        train: The `TrainConfig`.
        monitor: The log that `plateau` watches (the run's `train.monitor`,
            or a baseline's version of it).
        mode: `"min"`, `"max"` or `"auto"`, as for Keras' callbacks.
    """
    if train.lr_schedule == "cosine":
        decay = keras.optimizers.schedules.CosineDecay(
            train.learning_rate, decay_steps=train.epochs
        )
        return [
            keras.callbacks.LearningRateScheduler(lambda epoch: float(decay(epoch)))
        ]
    if train.lr_schedule == "plateau":
        return [
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                mode=mode,
                factor=train.lr_plateau_factor,
                patience=train.lr_plateau_patience,
            )
        ]
    return []
