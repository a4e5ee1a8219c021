"""`train`: run directory, resume after an interruption, the NaN guard."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_mtl

from conftest import InterruptAtEpoch, run_dir_held_by_another_process


def test_train_writes_the_run_directory(tiny_config):
    model, history, run_dir = keras_mtl.train(tiny_config, verbose=0)
    assert run_dir == Path(tiny_config.train.run_dir) / "shapes"
    assert (run_dir / "checkpoints" / "best.keras").exists()
    assert (run_dir / "logs").is_dir()
    assert keras_mtl.load_config(str(run_dir / "config.toml")) == tiny_config
    saved = json.loads((run_dir / "history.json").read_text())
    assert saved["fine_loss"] == pytest.approx(history.history["fine_loss"])
    assert {
        "coarse_loss",
        "fine_loss",
        "val_coarse_accuracy",
        "val_fine_accuracy",
    } <= set(saved)
    assert not (run_dir / "backup").exists()  # removed after a finished run


def test_logged_total_loss_is_the_weighted_sum_of_task_losses(tiny_config):
    config = tiny_config.replace(["tasks.coarse.weight=0.25", "tasks.fine.weight=3.0"])
    _, history, _ = keras_mtl.train(config, verbose=0)
    logs = {key: value[-1] for key, value in history.history.items()}
    assert logs["loss"] == pytest.approx(
        0.25 * logs["coarse_loss"] + 3.0 * logs["fine_loss"], rel=1e-4
    )
    assert logs["val_loss"] == pytest.approx(
        0.25 * logs["val_coarse_loss"] + 3.0 * logs["val_fine_loss"], rel=1e-4
    )


class StepsPerEpoch(keras.callbacks.Callback):
    """The optimizer's step count at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_epoch_end(self, epoch, logs=None):
        self.steps.append(int(self.model.optimizer.iterations))


def test_every_epoch_trains_its_steps_when_steps_per_call_do_not_divide_them(
    tiny_config,
):
    # 5 steps an epoch, 2 steps per call: calls of 2, 2 and 1, from one
    # iterator of the training batches for the whole fit.
    config = tiny_config.replace(
        ["data.max_examples=320", "train.epochs=3", "train.steps_per_execution=2"]
    )
    counter = StepsPerEpoch()
    model, history, _ = keras_mtl.train(config, callbacks=[counter], verbose=0)
    assert model.steps_per_execution == 2
    assert counter.steps == [5, 10, 15]
    assert history.epoch == [0, 1, 2]


def test_an_interrupted_run_resumes_at_the_next_epoch(tiny_config):
    config = tiny_config.replace(["train.epochs=3"])
    with pytest.raises(KeyboardInterrupt):
        keras_mtl.train(config, callbacks=[InterruptAtEpoch(2)], verbose=0)
    run_dir = keras_mtl.training.run_dir_for(config)
    assert (run_dir / "backup").exists()
    _, history, _ = keras_mtl.train(config, verbose=0)
    assert history.epoch == [2]  # epochs 0 and 1 were not run again
    rows = (run_dir / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]
    assert len(json.loads((run_dir / "history.json").read_text())["loss"]) == 3


def test_resuming_with_another_config_is_refused(tiny_config):
    config = tiny_config.replace(["train.epochs=2"])
    with pytest.raises(KeyboardInterrupt):
        keras_mtl.train(config, callbacks=[InterruptAtEpoch(1)], verbose=0)
    with pytest.raises(ValueError, match="interrupted run with a different config"):
        keras_mtl.train(config.replace(["model.width=4"]), verbose=0)


class PoisonHead2(keras.callbacks.Callback):
    """Makes Head 2's output NaN after the first batch."""

    def on_train_batch_end(self, batch, logs=None):
        kernel = self.model.get_layer("head2").output_layer.kernel
        kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_a_nan_loss_stops_training_and_names_the_task(tiny_config):
    with pytest.raises(keras_mtl.TrainingDivergedError) as error:
        keras_mtl.train(
            # One step per call: the NaN shows at the second step, epoch 1.
            tiny_config.replace(["train.epochs=3", "train.steps_per_execution=1"]),
            callbacks=[PoisonHead2()],
            verbose=0,
        )
    message = str(error.value)
    assert "fine_loss" in message and "coarse_loss" not in message
    assert "epoch 1" in message and "best.keras" in message


def test_a_second_train_in_a_run_directory_is_refused(tiny_config):
    run_dir = keras_mtl.training.run_dir_for(tiny_config)
    with run_dir_held_by_another_process(run_dir) as holder:
        with pytest.raises(ValueError, match=rf"in use .* \(pid {holder.pid}, lock"):
            keras_mtl.train(tiny_config, verbose=0)
    # The holder was killed (SIGKILL): its lock file names a dead pid.
    assert (run_dir / ".lock").read_text().strip() == str(holder.pid)
    _, history, _ = keras_mtl.train(tiny_config, verbose=0)
    assert history.epoch == [0]


def test_a_file_where_the_run_directory_should_be(tiny_config):
    Path(tiny_config.train.run_dir).write_text("not a directory")
    with pytest.raises(ValueError, match=r"`train.run_dir` must be .* is a file"):
        keras_mtl.train(tiny_config, verbose=0)


def test_a_run_without_a_validation_split_writes_its_history(adult_csv, tmp_path):
    """CSVLogger writes "NA" for the validation columns of such a run."""
    config = keras_mtl.load_config(
        "adult",
        [
            f"data.path={adult_csv}",
            "data.max_examples=256",
            "data.validation_fraction=0",
            "train.epochs=1",
            "train.monitor=loss",
            f"train.run_dir={tmp_path / 'runs'}",
        ],
    )
    result = keras_mtl.train(config)
    history = json.loads((result.run_dir / "history.json").read_text())
    assert len(history["loss"]) == 1
    assert not any(key.startswith("val_") for key in history)
