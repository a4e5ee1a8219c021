"""Keras' callback internals: TensorBoard's writers, `BackupAndRestore`'s
save hook and `keras.src.utils.file_utils`.

- `EpochTensorBoard` writes the model's conceptual graph with
  `keras.src.callbacks.tensorboard.keras_model_summary` into
  `TensorBoard._train_writer`, and the train graph once
  (`_should_write_train_graph`, `_write_keras_model_train_graph`) at the end
  of the first epoch instead of the first batch.
- `MultiWorkerBackupAndRestore` replaces `BackupAndRestore._save_model` (which
  Keras calls with `_current_epoch` set to the finished epochs) and reads and
  writes its files with `keras.src.utils.file_utils`, which handles local
  and `gs://` paths alike.
- `BestModelCheckpoint` replaces `ModelCheckpoint._save_model`, asks its
  `_should_save_model` whether the monitored value improved, and saves into
  memory with `keras.src.saving.saving_lib.save_model` (file objects).

The private modules are imported on first use, so `import keras_mtl` works on
any Keras; each name has a canary test in `tests/test_compat.py`.
"""

from keras_mtl.compat.internals import attribute, import_module

TENSORBOARD = "EpochTensorBoard"
BACKUP = "MultiWorkerBackupAndRestore"
CHECKPOINT = "BestModelCheckpoint"


class _PrivateModule:
    """A private Keras module imported on first attribute access."""

    def __init__(self, name, feature):
        self.name = name
        self.feature = feature

    def __getattr__(self, attr):
        module = import_module(self.name, self.feature)
        return attribute(module, attr, self.feature, owner=self.name)


# `file_utils.join(...)`, `file_utils.exists(...)`, ... as in Keras' own callbacks.
file_utils = _PrivateModule("keras.src.utils.file_utils", BACKUP)


def write_model_summary(board, model):
    """Writes `model`'s conceptual graph (the `keras` summary) to `board`'s
    train logs at step 0, as Keras' `TensorBoard` does for functional models."""
    summary = attribute(
        import_module("keras.src.callbacks.tensorboard", TENSORBOARD),
        "keras_model_summary",
        TENSORBOARD,
        owner="keras.src.callbacks.tensorboard",
    )
    with attribute(board, "_train_writer", TENSORBOARD).as_default():
        summary("keras", model, step=0)


def write_train_graph_once(board):
    """Writes the model's train graph to `board` if it has not done so yet
    (Keras' `TensorBoard` does it in its first `on_train_batch_end`)."""
    if attribute(board, "_should_write_train_graph", TENSORBOARD):
        attribute(board, "_write_keras_model_train_graph", TENSORBOARD)()
        board._should_write_train_graph = False


class BackupSaveHook:
    """Routes `keras.callbacks.BackupAndRestore`'s private save hook to a
    public `save_backup(epoch)`: a mixin placed before `BackupAndRestore`.

    Keras calls `_save_model()` when a backup is due, after setting
    `_current_epoch` to the number of finished epochs.
    """

    def _save_model(self):
        self.save_backup(attribute(self, "_current_epoch", BACKUP))

    def save_backup(self, epoch):
        """Writes the backup after `epoch` finished epochs."""
        raise NotImplementedError


class CheckpointSaveHook:
    """Routes `keras.callbacks.ModelCheckpoint`'s private save step to a
    public `save_best(epoch)`: a mixin placed before `ModelCheckpoint`.

    Keras calls `_save_model(epoch, batch, logs)` at every epoch end; its
    `_should_save_model` says whether the monitored value improved (and
    records the new best).
    """

    def _save_model(self, epoch, batch, logs):
        should_save = attribute(self, "_should_save_model", CHECKPOINT)
        if should_save(epoch, batch, logs, self.filepath):
            self.save_best(epoch)

    def save_best(self, epoch):
        """Called after the epoch `epoch` (0-based) improved on the best."""
        raise NotImplementedError


def save_model_to_bytes(model):
    """The `.keras` archive of `model`, as bytes (Keras saves to file objects
    through `keras.src.saving.saving_lib.save_model`)."""
    import io

    saving_lib = import_module("keras.src.saving.saving_lib", CHECKPOINT)
    buffer = io.BytesIO()
    attribute(saving_lib, "save_model", CHECKPOINT, owner=saving_lib.__name__)(
        model, buffer
    )
    return buffer.getvalue()
