"""The NaN guard and the epoch-only callbacks of every run."""

import keras
import pytest
import tensorflow as tf
from keras.src import utils

import keras_mtl
from keras_mtl.callbacks import EpochTensorBoard, epoch_only


def _events(directory):
    events = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        events += list(tf.compat.v1.train.summary_iterator(str(path)))
    return events


def test_epoch_tensorboard_writes_the_model_and_epoch_scalars(tiny_config):
    _, _, run_dir = keras_mtl.train(tiny_config.replace(["train.epochs=2"]), verbose=0)
    events = _events(run_dir / "logs" / "train")
    tags = {value.tag for event in events for value in event.summary.value}
    assert "keras" in tags  # the conceptual graph TensorBoard draws
    assert {"epoch_coarse_loss", "epoch_fine_loss", "epoch_loss"} <= tags
    steps = sorted(
        {e.step for e in events for v in e.summary.value if v.tag == "epoch_loss"}
    )
    assert steps == [0, 1]  # one point per epoch, none per batch
    assert not any(tag.startswith("batch_") for tag in tags)


def test_epoch_only_callbacks_have_no_batch_hooks(tmp_path):
    board = EpochTensorBoard(str(tmp_path))
    checkpoint = epoch_only(keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras")))
    for callback in (board, checkpoint):
        assert utils.is_default(callback.on_train_batch_end)
        assert utils.is_default(callback.on_train_batch_begin)
    assert not utils.is_default(
        keras.callbacks.TensorBoard(str(tmp_path)).on_train_batch_end
    )
    every_ten = keras.callbacks.ModelCheckpoint(str(tmp_path / "m.keras"), save_freq=10)
    with pytest.raises(ValueError, match="saves every 10 batches"):
        epoch_only(every_ten)
