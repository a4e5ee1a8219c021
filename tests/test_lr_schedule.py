"""train.lr_schedule: Keras' own schedules, and the unweighted validation loss."""

import keras
import pytest

import keras_mtl
from keras_mtl.callbacks import UnweightedLoss
from keras_mtl.lr_schedule import schedule_callbacks


def _train(*overrides):
    return keras_mtl.load_config("shapes", ["train.epochs=4", *overrides]).train


def test_each_schedule_is_a_keras_callback():
    assert schedule_callbacks(_train(), "val_loss") == []
    (plateau,) = schedule_callbacks(
        _train(
            "train.lr_schedule=plateau",
            "train.lr_plateau_patience=3",
            "train.lr_plateau_factor=0.25",
        ),
        "val_loss",
        "min",
    )
    assert isinstance(plateau, keras.callbacks.ReduceLROnPlateau)
    assert (plateau.monitor, plateau.patience, plateau.factor) == ("val_loss", 3, 0.25)
    (cosine,) = schedule_callbacks(_train("train.lr_schedule=cosine"), "val_loss")
    assert isinstance(cosine, keras.callbacks.LearningRateScheduler)
    rates = [cosine.schedule(epoch) for epoch in range(5)]
    assert rates[0] == pytest.approx(1e-3 * 2)  # the shapes preset's 0.002
    assert rates[2] == pytest.approx(rates[0] / 2)
    assert rates[4] == pytest.approx(0.0, abs=1e-9)
    assert rates == sorted(rates, reverse=True)


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.lr_schedule=step", "train.lr_schedule"),
        ("train.lr_plateau_factor=1.5", "train.lr_plateau_factor"),
        ("train.lr_plateau_patience=-1", "train.lr_plateau_patience"),
    ],
)
def test_bad_schedule_settings_are_refused(override, match):
    with pytest.raises(ValueError, match=match):
        keras_mtl.load_config("shapes", [override])


def test_the_unweighted_loss_is_the_sum_of_the_task_losses():
    logs = {"a_loss": 1.0, "b_loss": 2.5, "val_a_loss": 0.5, "val_b_loss": 0.25}
    UnweightedLoss(["a", "b"]).on_epoch_end(0, logs)
    assert logs["unweighted_loss"] == 3.5 and logs["val_unweighted_loss"] == 0.75
    partial = {"a_loss": 1.0}
    UnweightedLoss(["a", "b"]).on_epoch_end(0, partial)
    assert "unweighted_loss" not in partial
