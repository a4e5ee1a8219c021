"""Callbacks of every run: a NaN guard that names the task, and epoch-only logs.

Keras calls the callbacks after every training step as soon as one of them
has a batch hook, and Keras' `TensorBoard`, `ModelCheckpoint` and
`BackupAndRestore` have batch hooks even when they work once an epoch.
Measured on the adult MLP (2.8 ms steps, 2 CPU cores, Keras 3.15), each of
TensorBoard and checkpoint + backup cost about 22% of the training speed;
without their batch hooks the run is as fast as with no callback at all.
`epoch_only` removes those hooks from callbacks configured to work per epoch.
"""

import math

import keras

from keras_mtl.compat import keras_callbacks

_BATCH_HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
    "on_predict_batch_begin",
    "on_predict_batch_end",
)


class TerminateOnNaN(keras.callbacks.Callback):
    """Stops training when any logged loss is NaN or infinite, and names it.

    Keras' own `TerminateOnNaN` watches only the total `loss`; with several
    tasks the first question is which task's loss broke. It checks every
    batch, so that the epoch's backup never holds NaN weights.
    """

    # It only reads the logs and sets `stop_training`, which the loop checks at
    # the next step: Keras may call it from its callback thread.
    async_safe = True

    def __init__(self):
        super().__init__()
        self.bad_losses = []
        self.batch = None

    def on_train_batch_end(self, batch, logs=None):
        bad = sorted(
            name
            for name, value in (logs or {}).items()
            if name.endswith("loss") and not math.isfinite(float(value))
        )
        if bad:
            self.bad_losses, self.batch = bad, batch
            self.model.stop_training = True


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` that writes once an epoch, and only then.

    The same files as `TensorBoard(update_freq="epoch", profile_batch=0)`,
    without the per-batch hooks, and with the model's conceptual graph for
    any functional model (Keras writes it only for the classes named
    `Functional` and `Sequential`).

    Args:
        log_dir: Where the event files go.
        **kwargs: `keras.callbacks.TensorBoard` arguments other than
            `update_freq` and `profile_batch`.
    """

    def __init__(self, log_dir="logs", **kwargs):
        super().__init__(log_dir, update_freq="epoch", profile_batch=0, **kwargs)
        epoch_only(self)

    def set_model(self, model):
        super().set_model(model)
        # Keras writes the model's conceptual graph (the "keras" summary) only
        # for classes named Functional or Sequential; a MultiTaskModel is one.
        if self.write_graph and type(model).__name__ not in (
            "Functional",
            "Sequential",
        ):
            keras_callbacks.write_model_summary(self, model)

    def on_epoch_end(self, epoch, logs=None):
        keras_callbacks.write_train_graph_once(self)
        super().on_epoch_end(epoch, logs)


def epoch_only(callback):
    """Removes the batch hooks of a callback that works once an epoch.

    Only for callbacks whose batch hooks do nothing in their configuration
    (`save_freq="epoch"` checkpoints and backups, `EpochTensorBoard`).

    Args:
        callback: A `keras.callbacks.Callback`.

    Returns:
        The same callback.

    Example:

    ```python
    checkpoint = epoch_only(keras.callbacks.ModelCheckpoint("best.keras"))
    ```
    """
    if getattr(callback, "save_freq", "epoch") != "epoch":
        raise ValueError(
            f"{type(callback).__name__} saves every {callback.save_freq} batches; "
            "its batch hooks are needed. Received: save_freq="
            f"{callback.save_freq!r}"
        )
    for name in _BATCH_HOOKS:
        # Keras skips hooks that are still `Callback`'s own (marked default).
        setattr(
            callback, name, getattr(keras.callbacks.Callback, name).__get__(callback)
        )
    return callback


class LabelledFractions(keras.callbacks.Callback):
    """Adds each task's labelled fraction of the training and validation
    splits to every epoch's logs: `<task>_labelled`, `val_<task>_labelled`.
    `train` adds it when some task misses labels (`incomplete`).

    With missing labels a task learns from fewer rows than its sibling; the
    fraction beside its loss in the History, `history.csv` and TensorBoard
    says how many. Insert it before the callbacks that write the logs.

    Args:
        labelled: `{split: {task: labelled rows}}` (`Datasets.labelled`).
        sizes: `{split: rows}` (`Datasets.sizes`).
    """

    def __init__(self, labelled, sizes):
        super().__init__()
        self.fractions = {}
        for split, prefix in (("train", ""), ("validation", "val_")):
            rows = sizes.get(split)
            for task, count in (labelled.get(split) or {}).items():
                if rows:
                    self.fractions[f"{prefix}{task}_labelled"] = count / rows

    @property
    def incomplete(self):
        """Whether some task misses labels in the training or validation split."""
        return any(fraction < 1.0 for fraction in self.fractions.values())

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self.fractions)


class UnweightedLoss(keras.callbacks.Callback):
    """Adds `unweighted_loss` and `val_unweighted_loss` to every epoch's logs.

    They are the sums of the per-task losses (which Keras logs unweighted),
    so unlike `loss` and `val_loss` they do not move with the loss weights: a
    run can stop early and keep its best epoch by them
    (`train.monitor = "val_unweighted_loss"`) whatever its weighting method.
    Later callbacks (early stopping, the checkpoint, the CSV log) see them.

    Args:
        task_names: The tasks' names.
    """

    def __init__(self, task_names):
        super().__init__()
        self.task_names = list(task_names)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for prefix in ("", "val_"):
            keys = [f"{prefix}{name}_loss" for name in self.task_names]
            if all(key in logs for key in keys):
                logs[f"{prefix}unweighted_loss"] = float(sum(logs[k] for k in keys))
