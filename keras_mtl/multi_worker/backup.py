"""`MultiWorkerBackupAndRestore`: one backup, written by the chief, read by all.

Keras 3's `BackupAndRestore` has no multi-worker logic: every worker writes its
own backup, and after a worker was killed and the cluster restarted, workers
resumed at different epochs with different weights and trained out of sync
without a warning. Here only the chief writes, into one directory that every
worker can read (a shared file system or a `gs://` path across machines), and
every worker restores that same backup, so they all resume after the same
finished epoch with the same weights and optimizer state.

A backup is written so that a kill at any moment leaves either the previous
or the new one: the weights go to a file named after the epoch, then a small
JSON file that names it replaces the old one in one rename. On one machine the
callback is the chief and behaves as Keras' own.

With `every_seconds` (`train.backup_every_seconds`) the chief writes when that
long has passed since its last write, and keeps the other epochs' weights in
memory (`keras_mtl.save_policy`): `save_unsaved` writes the last of them after
an interruption, and `on_train_end` when the backup is kept.
"""

import json
import logging
import math
import os

from keras.callbacks import BackupAndRestore

from keras_mtl.compat.keras_callbacks import BackupSaveHook, file_utils
from keras_mtl.compat.keras_trainer import set_initial_epoch
from keras_mtl.multi_worker.cluster import is_chief
from keras_mtl.save_policy import SaveClock, epoch_snapshot

logger = logging.getLogger(__name__)

_STATE = "training_metadata.json"


class MultiWorkerBackupAndRestore(BackupSaveHook, BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` for several workers sharing a backup.

    Args:
        backup_dir: A directory every worker can read and the chief can write.
        delete_checkpoint: Remove the backup when training finishes.
        every_seconds: Write at most this often; 0 writes after every epoch.
        clock: Seconds since some moment (`keras_mtl.save_policy.SaveClock`).

    Example:

    ```python
    backup = MultiWorkerBackupAndRestore("runs/shapes/backup")
    model.fit(dataset, epochs=8, callbacks=[backup])  # on every worker
    ```
    """

    def __init__(
        self, backup_dir, delete_checkpoint=True, every_seconds=0.0, clock=None
    ):
        super().__init__(backup_dir, delete_checkpoint=delete_checkpoint)
        self.restored_epoch = 0
        self.every_seconds = every_seconds
        self._clock = clock
        self._unsaved = None

    def _chief(self):
        return is_chief(self.model.distribute_strategy)

    def _state_path(self):
        return file_utils.join(self.backup_dir, _STATE)

    def _read_state(self):
        if not file_utils.exists(self._state_path()):
            return None
        with file_utils.File(self._state_path(), "r") as file:
            return json.loads(file.read())

    def on_train_begin(self, logs=None):
        self.restored_epoch = 0
        self.save_clock = SaveClock(self.every_seconds, self._clock)
        self._unsaved = None
        state = self._read_state()
        if state is None or "weights" not in state:
            return
        weights = file_utils.join(self.backup_dir, state["weights"])
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(weights)
        set_initial_epoch(self.model, state["epoch"])
        self.restored_epoch = state["epoch"]
        logger.info("Resuming after epoch %d from %s", state["epoch"], self.backup_dir)

    def save_backup(self, epoch):
        if not self._chief():
            return
        if not file_utils.exists(self.backup_dir):
            file_utils.makedirs(self.backup_dir)
        previous = self._read_state()
        name = f"epoch-{epoch}.weights.h5"
        self.model.save_weights(file_utils.join(self.backup_dir, name), overwrite=True)
        state = {"epoch": epoch, "batch": 0, "weights": name}
        temporary = self._state_path() + ".tmp"
        with file_utils.File(temporary, "w") as file:
            file.write(json.dumps(state))
        _replace(temporary, self._state_path())
        if previous and previous.get("weights") not in (None, name):
            old = file_utils.join(self.backup_dir, previous["weights"])
            if file_utils.exists(old):
                file_utils.remove(old)

    def on_epoch_end(self, epoch, logs=None):
        if not self._chief() or not _finite_losses(logs):
            return  # A NaN stop keeps the last finite epoch.
        if self.save_clock.due():
            self.save_backup(epoch + 1)
            self.save_clock.saved()
            self._unsaved = None
        else:
            self._unsaved = (epoch + 1, epoch_snapshot(self.model, epoch + 1))

    def save_unsaved(self):
        """Writes the last finished epoch kept in memory, if not written yet."""
        unsaved, self._unsaved = self._unsaved, None
        if unsaved is not None and self._chief():
            epoch, snapshot = unsaved
            with snapshot.applied():
                self.save_backup(epoch)

    def on_train_end(self, logs=None):
        if not self._chief():
            return
        if self.delete_checkpoint:
            self._unsaved = None
            super().on_train_end(logs)
        else:
            self.save_unsaved()


def _finite_losses(logs):
    return all(
        math.isfinite(float(value))
        for name, value in (logs or {}).items()
        if name.endswith("loss")
    )


def _replace(source, target):
    if file_utils.is_remote_path(target):
        import tensorflow as tf

        tf.io.gfile.rename(source, target, overwrite=True)
    else:
        os.replace(source, target)


def backup_epoch(backup_dir):
    """The number of finished epochs in a backup directory, or 0 without one."""
    path = os.path.join(backup_dir, _STATE)
    if not os.path.exists(path):
        return 0
    with open(path) as file:
        return json.load(file).get("epoch", 0)
