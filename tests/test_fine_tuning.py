"""The two-phase schedule: heads alone, then the whole model, across a resume."""

import numpy as np
import pytest

import keras_mtl
from keras_mtl.fine_tuning import Phase, training_phases

from conftest import InterruptAtEpoch, TrunkRecorder


def test_training_phases():
    config = keras_mtl.load_config(
        "shapes",
        ["train.epochs=5", "train.freeze_epochs=2", "train.learning_rate=0.001"],
    )
    assert training_phases(config) == [
        Phase(0, 2, False, 1e-3),
        Phase(2, 5, True, 1e-5),
    ]
    frozen = config.replace(["train.freeze_epochs=0", "model.trunk_trainable=false"])
    assert training_phases(frozen) == [Phase(0, 5, False, 1e-3)]


def test_heads_first_then_the_whole_model_and_a_resume_in_phase_two(tiny_config):
    config = tiny_config.replace(
        [
            "train.epochs=2",
            "train.freeze_epochs=1",
            "train.learning_rate=0.001",
            "train.fine_tune_learning_rate=0.0005",
        ]
    )
    recorder = TrunkRecorder()
    with pytest.raises(KeyboardInterrupt):  # as phase 2 starts
        keras_mtl.train(config, callbacks=[recorder, InterruptAtEpoch(1)], verbose=0)
    trainable0, rate0, weights0 = recorder.epochs[0]
    assert not trainable0 and rate0 == pytest.approx(1e-3)
    for before, after in zip(recorder.initial, weights0, strict=True):
        np.testing.assert_array_equal(before, after)  # frozen in phase 1

    resumed = TrunkRecorder()
    _, history, run_dir = keras_mtl.train(config, callbacks=[resumed], verbose=0)
    assert history.epoch == [1]
    for before, restored in zip(weights0, resumed.initial, strict=True):
        np.testing.assert_array_equal(before, restored)
    trainable1, rate1, weights1 = resumed.epochs[1]
    assert trainable1 and rate1 == pytest.approx(5e-4)
    assert any(
        not np.array_equal(a, b) for a, b in zip(weights0, weights1, strict=True)
    )
    rows = (run_dir / "history.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["train.epochs=2", "train.freeze_epochs=2"], "train.freeze_epochs"),
        (["train.freeze_epochs=1", "model.trunk_trainable=false"], "freeze_epochs"),
        (["train.fine_tune_learning_rate=0"], "train.fine_tune_learning_rate"),
    ],
)
def test_impossible_schedules_are_refused(overrides, key):
    with pytest.raises(ValueError, match=key):
        keras_mtl.load_config("shapes", overrides)
