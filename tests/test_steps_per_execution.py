"""`train.steps_per_execution`: same training with k steps per call, "auto",
and the fallback on logical CPU devices."""

import logging

import keras
import numpy as np
import pytest

import keras_mtl
from keras_mtl.config import weighting_methods
from keras_mtl.steps_per_execution import AUTO_STEPS, resolve_steps_per_execution

import weighting_helpers as helpers


def _trained_weights(method, steps_per_execution, endless=False):
    model = helpers.build(
        method, extra=[f"train.steps_per_execution={steps_per_execution}"]
    )
    assert model.steps_per_execution == steps_per_execution
    data = helpers.batches(helpers.toy_data(64))  # 4 batches of 16
    if endless:  # As keras_mtl.train fits.
        data, steps = keras_mtl.data.repeat_epochs(data)
        model.fit(data, steps_per_epoch=steps, epochs=2, verbose=0, shuffle=False)
        assert int(model.optimizer.iterations) == 2 * steps
    else:
        model.fit(data, epochs=2, verbose=0, shuffle=False)
    state = model.weighting.variables if model.weighting is not None else []
    return model.get_weights() + [np.asarray(v) for v in state]


@pytest.mark.parametrize("method", weighting_methods.names())
def test_three_steps_per_call_train_as_one(method):
    """Per-step state (weights, logits, seeds) updates once per step: 3 steps
    per call (a call of 3 and one of 1 per epoch of the endless dataset that
    keras_mtl.train fits on) give the same weights."""
    one = _trained_weights(method, 1)
    three = _trained_weights(method, 3, endless=True)
    for index, (got, expected) in enumerate(zip(three, one, strict=True)):
        np.testing.assert_allclose(
            got, expected, rtol=1e-5, atol=1e-6, err_msg=f"{method}: weight {index}"
        )


def test_auto_is_capped_by_the_steps_of_an_epoch():
    assert resolve_steps_per_execution("auto") == AUTO_STEPS
    assert resolve_steps_per_execution("auto", steps_per_epoch=5) == 5
    assert resolve_steps_per_execution(4, steps_per_epoch=2) == 4


def test_logical_cpus_fall_back_to_one_step_with_a_warning(tiny_config, caplog):
    config = tiny_config.replace(["train.replicas=2", "train.steps_per_execution=8"])
    strategy = keras_mtl.make_strategy(config.train)  # no longer refused
    with caplog.at_level(logging.WARNING, "keras_mtl.steps_per_execution"):
        assert resolve_steps_per_execution(8, strategy) == 1
    (record,) = caplog.records
    assert "\n" not in record.getMessage()
    assert "on CPU devices (logical CPUs or CPU workers); running 1" in (
        record.getMessage()
    )
    assert resolve_steps_per_execution(1, strategy) == 1


def test_the_default_is_auto_and_build_model_resolves_it(caplog):
    """`model.compile` takes integers: `build_model` gives it one, and on
    logical CPUs 1, saying so in one line."""
    assert keras_mtl.load_config("adult").train.steps_per_execution == "auto"
    assert helpers.build().steps_per_execution == AUTO_STEPS
    with caplog.at_level(logging.INFO, "keras_mtl.steps_per_execution"):
        assert helpers.build(replicas=2).steps_per_execution == 1
    (record,) = caplog.records
    assert record.levelno == logging.INFO and "running 1" in record.getMessage()


@pytest.mark.parametrize("value", ["auto", 1, 32])
def test_steps_per_execution_accepts_integers_and_auto(value):
    text = f'"{value}"' if isinstance(value, str) else str(value)
    config = keras_mtl.load_config("shapes", [f"train.steps_per_execution={text}"])
    assert config.train.steps_per_execution == value
    assert keras_mtl.load_config("shapes").replace([]) == keras_mtl.load_config(
        "shapes"
    )


@pytest.mark.parametrize("value", ["0", "fast", "true", "2.5"])
def test_other_steps_per_execution_are_refused(value):
    with pytest.raises(ValueError, match="train.steps_per_execution.*'auto'"):
        keras_mtl.load_config("shapes", [f"train.steps_per_execution={value}"])


class PoisonHead2(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        kernel = self.model.get_layer("head2").output_layer.kernel
        kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_train_runs_auto_steps_per_call_and_the_nan_guard_still_stops(tiny_config):
    config = tiny_config.replace(['train.steps_per_execution="auto"', "train.epochs=2"])
    with pytest.raises(keras_mtl.TrainingDivergedError, match="fine_loss"):
        keras_mtl.train(config, callbacks=[PoisonHead2()], verbose=0)
    run_dir = keras_mtl.training.run_dir_for(config)
    saved = keras_mtl.load_config(str(run_dir / "config.toml"))
    assert saved.train.steps_per_execution == "auto"
