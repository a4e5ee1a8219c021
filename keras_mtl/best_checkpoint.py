"""`BestModelCheckpoint`: the best model by a monitored log, written on a timer.

Keras' `ModelCheckpoint(save_best_only=True)` writes the whole `.keras`
archive after every epoch that improves, which is most epochs early in
training (about 60 ms each for the adult MLP on 2 CPU cores). Here an
improving epoch keeps a `WeightsSnapshot`, and the archive is written when
`every_seconds` have passed since the last write, at the end of training
(`on_train_end`) and after an interruption (`save_unsaved`). The archive is
made in memory in the training thread and written to disk, by a rename into
place, in a background thread.
"""

import logging

from keras.callbacks import ModelCheckpoint

from keras_mtl.compat.keras_callbacks import CheckpointSaveHook, save_model_to_bytes
from keras_mtl.save_policy import BackgroundWriter, SaveClock, epoch_snapshot

logger = logging.getLogger(__name__)


class BestModelCheckpoint(CheckpointSaveHook, ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint(save_best_only=True)` on a timer.

    Args:
        filepath: The `.keras` file of the best model.
        monitor: The log to watch, such as `val_loss`.
        mode: `"min"`, `"max"` or `"auto"` (as `ModelCheckpoint`).
        every_seconds: Write at most this often during training; 0 writes
            after every improving epoch, as `ModelCheckpoint` does.
        clock: Seconds since some moment (`keras_mtl.save_policy.SaveClock`).

    Example:

    ```python
    best = BestModelCheckpoint("runs/best.keras", every_seconds=60)
    model.fit(dataset, epochs=20, callbacks=[best])  # written at the end
    ```
    """

    def __init__(
        self, filepath, monitor="val_loss", mode="auto", every_seconds=0.0, clock=None
    ):
        super().__init__(filepath, monitor=monitor, mode=mode, save_best_only=True)
        self.every_seconds = every_seconds
        self._clock = clock
        self._unsaved = None
        self._writer = BackgroundWriter()

    def on_train_begin(self, logs=None):
        self.save_clock = SaveClock(self.every_seconds, self._clock)
        self._unsaved = None

    def save_best(self, epoch):
        if self.save_clock.due():
            self._write()
        else:
            self._unsaved = epoch_snapshot(self.model, epoch + 1)

    def save_unsaved(self):
        """Writes the best model kept in memory, if any, and waits for it."""
        unsaved, self._unsaved = self._unsaved, None
        if unsaved is not None:
            with unsaved.applied():
                self._write()
        self._writer.wait()

    def on_train_end(self, logs=None):
        self.save_unsaved()

    def _write(self):
        self._writer.write(self.filepath, save_model_to_bytes(self.model))
        self.save_clock.saved()
        self._unsaved = None
