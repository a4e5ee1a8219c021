"""The time-based backup and best-model policy (`keras_mtl.save_policy`)."""

import json
import signal

import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl import save_policy
from keras_mtl.best_checkpoint import BestModelCheckpoint
from keras_mtl.multi_worker import MultiWorkerBackupAndRestore
from keras_mtl.multi_worker.backup import backup_epoch

from conftest import InterruptAtEpoch


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class AdvanceClock(keras.callbacks.Callback):
    """Each epoch lasts `seconds` on `clock`."""

    def __init__(self, clock, seconds):
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def on_epoch_begin(self, epoch, logs=None):
        self.clock.now += self.seconds


class RecordBackups(keras.callbacks.Callback):
    def __init__(self, backup_dir):
        super().__init__()
        self.backup_dir, self.epochs, self.weights = backup_dir, [], []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(backup_epoch(self.backup_dir))
        self.weights.append(self.model.get_weights())


def _tiny_model():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.Adam(0.1), "mse")
    return model


def _built_model():
    model = _tiny_model()
    model.optimizer.build(model.trainable_variables)
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 2)).astype("float32"), np.ones((16, 1), "float32")


def test_a_backup_is_written_when_the_interval_has_passed(tmp_path):
    clock, backup_dir = FakeClock(), tmp_path / "backup"
    backup = MultiWorkerBackupAndRestore(
        str(backup_dir), delete_checkpoint=False, every_seconds=10, clock=clock
    )
    record = RecordBackups(str(backup_dir))
    model = _tiny_model()
    x, y = _data()
    model.fit(
        x,
        y,
        epochs=5,
        batch_size=8,
        verbose=0,
        callbacks=[AdvanceClock(clock, 4), backup, record],
    )
    # Epochs end at t = 4, 8, 12, 16, 20: due at 12 (epoch 3), next at 22.
    assert record.epochs == [0, 0, 3, 3, 3]
    assert backup_epoch(str(backup_dir)) == 5  # kept: written at the end
    restored = _built_model()
    restored.load_weights(str(backup_dir / "epoch-5.weights.h5"))
    for got, expected in zip(restored.get_weights(), record.weights[-1], strict=True):
        np.testing.assert_array_equal(got, expected)


def test_an_interruption_writes_the_last_finished_epoch(tmp_path):
    clock, backup_dir = FakeClock(), tmp_path / "backup"
    backup = MultiWorkerBackupAndRestore(str(backup_dir), every_seconds=60, clock=clock)
    record = RecordBackups(str(backup_dir))
    model = _tiny_model()
    x, y = _data()
    with pytest.raises(KeyboardInterrupt):
        model.fit(
            x,
            y,
            epochs=4,
            batch_size=8,
            verbose=0,
            callbacks=[backup, record, InterruptAtEpoch(2)],
        )
    assert record.epochs == [0, 0] and not backup_dir.exists()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # training went on
    backup.save_unsaved()
    restored = _built_model()
    restored.load_weights(str(backup_dir / "epoch-2.weights.h5"))
    for got, expected in zip(restored.get_weights(), record.weights[1], strict=True):
        np.testing.assert_array_equal(got, expected)
    for got, now in zip(restored.get_weights(), model.get_weights(), strict=True):
        assert not np.array_equal(got, now)


def test_the_best_model_is_written_at_the_end_with_the_best_weights(tmp_path):
    clock, path = FakeClock(), tmp_path / "best.keras"
    best = BestModelCheckpoint(str(path), every_seconds=60, clock=clock)
    record = RecordBackups(str(tmp_path))

    class Written(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            assert not path.exists()

    model = _tiny_model()
    x, y = _data()
    history = model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=4,
        batch_size=8,
        verbose=0,
        callbacks=[best, record, Written()],
    )
    best_epoch = int(np.argmin(history.history["val_loss"]))
    saved = keras.saving.load_model(str(path))
    for got, expected in zip(
        saved.get_weights(), record.weights[best_epoch], strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    assert [p.name for p in tmp_path.iterdir()] == ["best.keras"]  # no temporary


def test_a_killed_run_resumes_after_the_last_timed_backup(tiny_config, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(save_policy, "default_clock", clock)
    config = tiny_config.replace(["train.epochs=4", "train.backup_every_seconds=10"])
    # A kill writes nothing on the way out.
    monkeypatch.setattr(keras_mtl.training, "save_unsaved", lambda *args: None)
    with pytest.raises(KeyboardInterrupt):
        keras_mtl.train(
            config,
            callbacks=[AdvanceClock(clock, 6), InterruptAtEpoch(3)],
            verbose=0,
        )
    run_dir = keras_mtl.training.run_dir_for(config)
    assert backup_epoch(run_dir / "backup") == 2  # written at t = 12
    _, history, _ = keras_mtl.train(config, verbose=0)
    assert history.epoch == [2, 3]
    rows = (run_dir / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2", "3"]
    assert len(json.loads((run_dir / "history.json").read_text())["loss"]) == 4


class SigtermAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            signal.raise_signal(signal.SIGTERM)


def test_sigterm_writes_the_backup_and_the_run_resumes(tiny_config):
    config = tiny_config.replace(["train.epochs=3"])  # default: every 60 s
    with pytest.raises(SystemExit) as stopped:
        keras_mtl.train(config, callbacks=[SigtermAtEpoch(2)], verbose=0)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    run_dir = keras_mtl.training.run_dir_for(config)
    assert backup_epoch(run_dir / "backup") == 2
    assert (run_dir / "checkpoints" / "best.keras").exists()
    _, history, _ = keras_mtl.train(config, verbose=0)
    assert history.epoch == [2]


def test_backup_every_seconds_must_not_be_negative():
    with pytest.raises(ValueError, match="train.backup_every_seconds"):
        keras_mtl.load_config("shapes", ["train.backup_every_seconds=-1"])
