"""Canaries for the private Keras/TensorFlow names behind `keras_mtl.compat`.

One test per private name (or per tight group of them). Each fails with a
message naming the name and the installed Keras and TensorFlow versions when
upstream renames, removes or changes it; then update `keras_mtl/compat/`.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl.compat import KerasInternalsError, keras_callbacks, keras_trainer
from keras_mtl.compat.internals import TESTED_RANGE
from keras_mtl.compat.tf_function import (
    SINGLE_THREADED_EXECUTOR,
    direct_call,
    tensor_maker,
)
from keras_mtl.weighting.base import task_losses

VERSIONS = f"Keras {keras.version()}, TensorFlow {tf.__version__}"
PACKAGE = Path(keras_mtl.__file__).parent


def canary(ok, name, expected):
    """Fails unless `ok`, naming the private `name` and what was expected."""
    assert ok, (
        f"The private name `{name}` changed in {VERSIONS}: expected {expected}. "
        "keras_mtl/compat/ relies on it; update it for this version."
    )


def _tiny_model(regularize=False, model_class=keras.Model):
    inputs = keras.Input((3,), name="x")
    regularizer = keras.regularizers.L2(0.1) if regularize else None
    shared = keras.layers.Dense(4, kernel_regularizer=regularizer, name="trunk")(inputs)
    outputs = {
        "a": keras.layers.Dense(1, name="head1")(shared),
        "b": keras.layers.Dense(1, name="head2")(shared),
    }
    return model_class(inputs=inputs, outputs=outputs)


def _compile(model, **kwargs):
    model.compile(
        optimizer="sgd",
        loss={"a": "mse", "b": "mae"},
        loss_weights={"a": 0.25, "b": 2.0},
        **kwargs,
    )
    return model


def _data(rows=8):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3)).astype("float32")
    y = {
        "a": rng.normal(size=(rows, 1)).astype("float32"),
        "b": rng.normal(size=(rows, 1)).astype("float32"),
    }
    return x, y


# Trainer and CompileLoss --------------------------------------------------


def test_compile_loss_is_none_until_compile():
    model = _tiny_model()
    canary(
        hasattr(model, "_compile_loss") and model._compile_loss is None,
        "Trainer._compile_loss",
        "None on an uncompiled model",
    )
    _compile(model)
    canary(
        model._compile_loss is not None and hasattr(model._compile_loss, "build"),
        "Trainer._compile_loss",
        "the CompileLoss after compile",
    )
    assert keras_trainer.compiled_loss(model) is model._compile_loss


def test_flat_losses_unpack_per_output_in_the_order_of_their_trackers():
    model = _compile(_tiny_model())
    x, y = _data()
    y_pred = model(x)
    compile_loss = model._compile_loss
    compile_loss.build(y, y_pred)
    flat = getattr(compile_loss, "_flat_losses", None)
    canary(flat is not None, "CompileLoss._flat_losses", "a list after build")
    entries = [tuple(entry) for entry in flat]
    canary(
        all(len(entry) == 4 for entry in entries),
        "CompileLoss._flat_losses",
        f"(path, loss_fn, loss_weight, name) entries, found {entries!r}",
    )
    paths = [entry[0] for entry in entries]
    canary(
        paths == [("a",), ("b",)],
        "CompileLoss._flat_losses",
        f"output paths [('a',), ('b',)], found {paths}",
    )
    names = [metric.name for metric in compile_loss.metrics]
    canary(
        names == ["a_loss", "b_loss"],
        "CompileLoss._flat_losses",
        f"per-output trackers in the same order, found {names}",
    )
    # The loss functions are called as Keras calls them, and their weighted
    # sum is the compiled loss.
    weighted = sum(
        weight * loss_fn(y[path[-1]], y_pred[path[-1]], None)
        for path, loss_fn, weight, _ in entries
    )
    canary(
        np.isclose(float(weighted), float(compile_loss(y, y_pred))),
        "CompileLoss._flat_losses",
        "loss_fn(y_true, y_pred, sample_weight) * loss_weight to sum to the loss",
    )
    outputs = keras_trainer.output_losses(compile_loss, y, y_pred)
    assert [(o.path, o.tracker.name) for o in outputs] == [
        (("a",), "a_loss"),
        (("b",), "b_loss"),
    ]


def test_user_loss_weights_are_the_compiled_dict():
    model = _compile(_tiny_model())
    weights = getattr(model._compile_loss, "_user_loss_weights", "missing")
    canary(
        weights == {"a": 0.25, "b": 2.0},
        "CompileLoss._user_loss_weights",
        f"the loss_weights passed to compile, found {weights!r}",
    )
    assert keras_trainer.user_loss_weights(model) == {"a": 0.25, "b": 2.0}


def test_aggregate_additional_loss_completes_the_compiled_loss():
    model = _compile(_tiny_model(regularize=True))
    x, y = _data()
    y_pred = model(x)
    canary(
        callable(getattr(model, "_aggregate_additional_loss", None)),
        "Trainer._aggregate_additional_loss",
        "a method",
    )
    expected = model.compute_loss(x, y, y_pred)
    extra = sum(model._aggregate_additional_loss(loss) for loss in model.losses)
    canary(
        np.isclose(float(model._compile_loss(y, y_pred) + extra), float(expected)),
        "Trainer._aggregate_additional_loss",
        "compute_loss == compiled loss + the aggregated model.losses",
    )


def test_loss_tracker_is_the_logged_loss():
    model = _compile(_tiny_model())
    x, y = _data()
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    tracker = getattr(model, "_loss_tracker", None)
    canary(
        isinstance(tracker, keras.metrics.Mean) and tracker.name == "loss",
        "Trainer._loss_tracker",
        f"a keras.metrics.Mean named 'loss', found {tracker!r}",
    )
    canary(
        np.isclose(float(tracker.result()), history.history["loss"][0]),
        "Trainer._loss_tracker",
        "its result to be the logged `loss`",
    )
    assert keras_trainer.total_loss_tracker(model) is tracker


def test_initial_epoch_set_in_on_train_begin_skips_finished_epochs():
    model = _compile(_tiny_model())
    canary(hasattr(model, "_initial_epoch"), "Trainer._initial_epoch", "an attribute")

    class Restore(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            keras_trainer.set_initial_epoch(self.model, 2)

    x, y = _data()
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[Restore()])
    canary(
        history.epoch == [2],
        "Trainer._initial_epoch",
        f"fit to start at it when set in on_train_begin, ran epochs {history.epoch}",
    )


def test_own_variables_are_what_save_own_variables_writes():
    class Owner(keras.layers.Layer):
        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(1,), name="kernel")
            self.count = self.add_weight(shape=(), trainable=False, name="count")
            self.inner = keras.layers.Dense(2)
            self.inner.build(input_shape)

    layer = Owner()
    layer.build((None, 3))
    for name in ("_trainable_variables", "_non_trainable_variables"):
        canary(isinstance(getattr(layer, name, None), list), f"Layer.{name}", "a list")
    store = {}
    layer.save_own_variables(store)
    canary(
        sorted(store) == ["0", "1"] and keras_trainer.own_variable_count(layer) == 2,
        "Layer._trainable_variables + Layer._non_trainable_variables",
        f"the variables save_own_variables writes as '0'..'n-1', found {sorted(store)}",
    )


def test_maybe_symbolic_build_gets_the_epoch_iterator_under_a_strategy():
    for name in ("_maybe_symbolic_build", "_symbolic_build"):
        canary(
            callable(getattr(keras.Model, name, None)), f"Trainer.{name}", "a method"
        )

    builds = []

    class Spy(keras_trainer.FirstReplicaSymbolicBuild, keras.Model):
        def _symbolic_build(self, *args, **kwargs):
            builds.append(kwargs["data_batch"])
            return super()._symbolic_build(*args, **kwargs)

    assert _tiny_model()._distribute_strategy is None
    strategy = keras_mtl.make_strategy(keras_mtl.TrainConfig(replicas=2))
    with strategy.scope():
        model = _compile(_tiny_model(model_class=Spy))
    canary(
        model._distribute_strategy is strategy,
        "Trainer._distribute_strategy",
        "the strategy whose scope the model was built in (None outside one)",
    )
    x, y = _data(rows=8)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    canary(
        len(builds) == 1,
        "TensorFlowTrainer._maybe_symbolic_build",
        f"fit under a strategy to call it once with the epoch iterator, got {builds}",
    )
    features = builds[0][0]
    canary(
        tuple(features.shape) == (4, 3) and np.allclose(features, x[:4]),
        "TensorFlowTrainer._maybe_symbolic_build",
        "(step, end step, distributed iterator) items from the epoch iterator; "
        f"built from {features!r}",
    )


def _endless_fit(model_class, steps_per_execution, steps_per_epoch=5, epochs=2):
    """Trained steps of `epochs` epochs of `steps_per_epoch` steps of an
    endless dataset, and the first input each epoch trained on."""
    x, y = _data(rows=40)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    model = _tiny_model(model_class=model_class)
    model.compile(
        optimizer="sgd",
        loss={"a": "mse", "b": "mae"},
        steps_per_execution=steps_per_execution,
    )
    model.fit(
        batches,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        verbose=0,
        shuffle=False,
    )
    return int(model.optimizer.iterations)


def test_keras_runs_a_whole_last_call_into_the_next_epoch():
    """Remove `ExactEpochSteps` once this fails: Keras then runs epochs of
    `steps_per_epoch` steps itself when `steps_per_execution` does not divide
    them."""
    assert _endless_fit(keras.Model, 3) == 12  # two epochs of 3 + 3 steps
    assert _endless_fit(keras.Model, 1) == 10


class ExactModel(keras_trainer.ExactEpochSteps, keras.Model):
    pass


def test_a_train_function_called_with_steps_per_execution_r_runs_r_steps():
    canary(
        _endless_fit(ExactModel, 3) == 10,
        "TensorFlowTrainer.make_train_function",
        "a train function made and called while steps_per_execution is 2 to "
        "run 2 steps (epochs of 3 + 2 steps)",
    )
    assert _endless_fit(ExactModel, 4, steps_per_epoch=9, epochs=3) == 27
    assert _endless_fit(ExactModel, 5) == 10  # divides: one call an epoch


@pytest.mark.parametrize("model_class", [keras.Model, ExactModel])
def test_the_progress_bar_stops_at_the_epochs_last_step(model_class, monkeypatch):
    shown = []
    update = keras.utils.Progbar.update

    def recorded(self, current, *args, **kwargs):
        shown.append(current)
        return update(self, current, *args, **kwargs)

    monkeypatch.setattr(keras.utils.Progbar, "update", recorded)
    x, y = _data(rows=40)
    model = _tiny_model(model_class=model_class)
    model.compile(optimizer="sgd", loss={"a": "mse", "b": "mae"}, steps_per_execution=3)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    model.fit(batches, steps_per_epoch=5, epochs=1, verbose=1)
    # Keras' own bar counts the whole last call: 3, then 6 of 5.
    assert shown == ([3, 5, 5] if model_class is ExactModel else [3, 6, 5])


# Callbacks ----------------------------------------------------------------


def _events(directory):
    events = []
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        events += list(tf.compat.v1.train.summary_iterator(str(path)))
    return events


def test_tensorboard_writer_and_train_graph_flag(tmp_path):
    from keras.src.callbacks import tensorboard

    canary(
        callable(getattr(tensorboard, "keras_model_summary", None)),
        "keras.src.callbacks.tensorboard.keras_model_summary",
        "a function",
    )
    model = _compile(_tiny_model(model_class=keras_mtl.MultiTaskModel))
    board = keras.callbacks.TensorBoard(str(tmp_path), write_graph=True)
    board.set_model(model)
    canary(
        board._should_write_train_graph is True,
        "TensorBoard._should_write_train_graph",
        "True after set_model with write_graph=True",
    )
    canary(
        hasattr(board._train_writer, "as_default"),
        "TensorBoard._train_writer",
        "a tf.summary writer",
    )
    canary(
        callable(getattr(board, "_write_keras_model_train_graph", None)),
        "TensorBoard._write_keras_model_train_graph",
        "a method",
    )
    x, y = _data()
    model.fit(x, y, epochs=1, verbose=0)
    keras_callbacks.write_model_summary(board, model)
    # Keras 3.15 writes a graph only for a train function with `function_spec`
    # (none here): the canary is that the call runs and clears the flag.
    keras_callbacks.write_train_graph_once(board)
    canary(
        board._should_write_train_graph is False,
        "TensorBoard._should_write_train_graph",
        "an attribute keras-mtl may clear",
    )
    board._train_writer.flush()
    events = _events(tmp_path / "train")
    tags = {value.tag for event in events for value in event.summary.value}
    canary("keras" in tags, "TensorBoard._train_writer", "the model summary in it")


def test_file_utils_has_what_the_backup_uses(tmp_path):
    from keras.src.utils import file_utils

    names = ("join", "exists", "File", "makedirs", "remove", "is_remote_path")
    missing = [name for name in names if not hasattr(file_utils, name)]
    canary(not missing, "keras.src.utils.file_utils", f"{names}, missing {missing}")
    path = file_utils.join(str(tmp_path), "sub", "state.json")
    file_utils.makedirs(str(tmp_path / "sub"))
    with file_utils.File(path, "w") as file:
        file.write("{}")
    assert file_utils.exists(path)
    file_utils.remove(path)
    assert not file_utils.exists(path)
    assert file_utils.is_remote_path("gs://bucket/x")
    assert not file_utils.is_remote_path(str(tmp_path))
    assert keras_callbacks.file_utils.join("a", "b") == file_utils.join("a", "b")


def test_backup_and_restore_calls_save_model_with_the_finished_epochs(tmp_path):
    canary(
        callable(getattr(keras.callbacks.BackupAndRestore, "_save_model", None)),
        "BackupAndRestore._save_model",
        "a method",
    )
    saved = []

    class Recorder(keras_callbacks.BackupSaveHook, keras.callbacks.BackupAndRestore):
        def save_backup(self, epoch):
            saved.append(epoch)

    model = _compile(_tiny_model())
    x, y = _data()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[Recorder(str(tmp_path))])
    canary(
        saved == [1, 2],
        "BackupAndRestore._save_model / _current_epoch",
        f"one call per epoch with the finished epochs [1, 2], got {saved}",
    )


def test_model_checkpoint_asks_should_save_model_at_every_epoch_end(tmp_path):
    improved = []

    class Recorder(keras_callbacks.CheckpointSaveHook, keras.callbacks.ModelCheckpoint):
        def save_best(self, epoch):
            improved.append(epoch)

    model = _compile(_tiny_model())
    x, y = _data()
    checkpoint = Recorder(
        str(tmp_path / "m.keras"), monitor="loss", save_best_only=True
    )
    model.fit(x, y, epochs=3, verbose=0, callbacks=[checkpoint])
    canary(
        improved and improved[0] == 0 and checkpoint.best is not None,
        "ModelCheckpoint._save_model / _should_save_model",
        f"a call after the first epoch and a best value, got {improved}",
    )
    data = keras_callbacks.save_model_to_bytes(model)
    (tmp_path / "m.keras").write_bytes(data)
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"))
    for got, expected in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)


# TensorFlow ---------------------------------------------------------------


@pytest.mark.parametrize("executor", ["", SINGLE_THREADED_EXECUTOR])
def test_direct_call_answers_as_the_public_call(tmp_path, executor):
    # LoadedModel.run calls a signature's function by name through eager
    # internals; where they are gone or answer differently, it keeps the
    # public call (slower, correct).
    from tensorflow.python.eager import context, execute

    class Adder(tf.Module):
        def __init__(self):
            self.scale = tf.Variable(3.0)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.float32, name="first-input"),
                tf.TensorSpec([None], tf.float32, name="second"),
            ]
        )
        def serve(self, first, second):
            return {"out": first - self.scale * second, "sum": first + second}

    module = Adder()
    tf.saved_model.save(
        module, str(tmp_path), signatures={"serving_default": module.serve}
    )
    signature = tf.saved_model.load(str(tmp_path)).signatures["serving_default"]
    for owner, name in (
        (signature, "_inference_function"),
        (execute, "execute"),
        (context.context().function_call_options, "config_proto_serialized"),
    ):
        canary(
            getattr(owner, name, None) is not None,
            f"{type(owner).__name__}.{name}",
            "what a direct call of a signature is made of",
        )
    tensors = {
        "first-input": tf.constant([1.0, 2.0]),
        "second": tf.constant([3.0, 5.0]),
    }
    expected = signature(first_input=tensors["first-input"], second=tensors["second"])
    outputs = direct_call(signature, executor)(tensors)
    canary(
        sorted(outputs) == ["out", "sum"]
        and all(
            np.array_equal(outputs[name].numpy(), expected[name].numpy())
            for name in expected
        ),
        "ConcreteFunction._inference_function.name",
        f"the public call's outputs {expected}, found {outputs}",
    )
    np.testing.assert_array_equal(outputs["out"].numpy(), [-8.0, -13.0])


def test_fingerprint_bytes_are_what_tf_saved_model_save_writes(tmp_path):
    # export.classify_signatures edits saved_model.pb and writes the
    # fingerprint again with TensorFlow's own function.
    from tensorflow.core.protobuf import fingerprint_pb2

    from keras_mtl.compat.tf_saved_model import fingerprint_bytes, rewrite_fingerprint

    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.serve = tf.function(
        lambda x: {"y": module.scale * x},
        input_signature=[tf.TensorSpec([None], tf.float32, name="x")],
    )
    tf.saved_model.save(module, str(tmp_path))

    def hashes(serialized):  # all but the random uuid
        fingerprint = fingerprint_pb2.FingerprintDef.FromString(serialized)
        fingerprint.ClearField("uuid")
        return fingerprint

    written = (tmp_path / "fingerprint.pb").read_bytes()
    canary(
        hashes(fingerprint_bytes(tmp_path)) == hashes(written),
        "fingerprinting_pywrap.CreateFingerprintDef",
        "the fingerprint tf.saved_model.save writes",
    )
    rewrite_fingerprint(tmp_path)
    assert hashes((tmp_path / "fingerprint.pb").read_bytes()) == hashes(written)
    assert hashes(written).saved_model_checksum != 0


def test_eager_tensor_canary():
    # tensor_maker builds tensors with tensorflow.python's EagerTensor; where
    # that is gone or differs it falls back to tf.constant (slower, correct).
    from tensorflow.python.framework import ops

    canary(
        isinstance(getattr(ops, "EagerTensor", None), type),
        "tensorflow.python.framework.ops.EagerTensor",
        "the class of eager tensors",
    )
    make = tensor_maker()
    canary(
        make.__name__ == "make",
        "EagerTensor(value, device, dtype)",
        "tensors equal to tf.constant's (tensor_maker fell back to tf.constant)",
    )
    array = np.array([[1.0, 2.5]], np.float64)
    made = make(array, tf.float32)  # cast as tf.constant casts
    array[0, 0] = 9.0  # the tensor holds a copy
    assert made.dtype == tf.float32
    np.testing.assert_array_equal(made.numpy(), [[1.0, 2.5]])
    strings = make(np.array([b"a", "b"], dtype=object), tf.string)
    assert strings.numpy().tolist() == [b"a", b"b"]


# The fence ----------------------------------------------------------------


def _assert_names_the_gap(error, name, feature):
    message = str(error.value)
    for part in (name, keras.version(), feature, TESTED_RANGE):
        assert part in message, f"{part!r} not in: {message}"
    assert TESTED_RANGE == "keras>=3.15,<3.16"


def test_a_missing_attribute_raises_a_clear_error(monkeypatch):
    model = _compile(_tiny_model())
    x, y = _data()
    monkeypatch.delattr(model, "_compile_loss")
    with pytest.raises(KerasInternalsError) as error:
        task_losses(model, y, model(x))
    _assert_names_the_gap(error, "Trainer._compile_loss", "loss weighting")
    assert isinstance(error.value, RuntimeError)


def test_a_missing_module_function_raises_a_clear_error(monkeypatch, tmp_path):
    from keras.src.callbacks import tensorboard
    from keras.src.utils import file_utils

    monkeypatch.delattr(tensorboard, "keras_model_summary")
    board = keras.callbacks.TensorBoard(str(tmp_path))
    with pytest.raises(KerasInternalsError) as error:
        keras_callbacks.write_model_summary(board, _tiny_model())
    _assert_names_the_gap(
        error, "keras.src.callbacks.tensorboard.keras_model_summary", "EpochTensorBoard"
    )
    monkeypatch.delattr(file_utils, "join")
    with pytest.raises(KerasInternalsError) as error:
        keras_callbacks.file_utils.join("a", "b")
    _assert_names_the_gap(
        error, "keras.src.utils.file_utils.join", "MultiWorkerBackupAndRestore"
    )


def test_a_missing_module_raises_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "keras.src.utils.file_utils", None)
    with pytest.raises(KerasInternalsError) as error:
        keras_callbacks.file_utils.exists("x")
    _assert_names_the_gap(
        error, "keras.src.utils.file_utils", "MultiWorkerBackupAndRestore"
    )


# Nothing outside keras_mtl/compat/ names a private Keras/TensorFlow name.
_PRIVATE = re.compile(
    r"keras\.src|(?<!\w)_(?:call_flat|inference_function|flat_losses|symbolic_build|maybe_symbolic_build"
    r"|compile_loss|user_loss_weights|aggregate_additional_loss|loss_tracker"
    r"|initial_epoch|trainable_variables|non_trainable_variables"
    r"|distribute_strategy|train_writer|should_write_train_graph"
    r"|write_keras_model_train_graph|current_epoch|save_model)\b"
)


def test_private_names_stay_behind_the_fence():
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "compat" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _PRIVATE.search(line)
    ]
    assert not found, "Private Keras/TF names outside keras_mtl/compat/:\n" + "\n".join(
        found
    )


@pytest.mark.slow
def test_import_keras_mtl_works_without_the_private_modules():
    script = """
import sys
import keras
for name in ("keras.src.utils.file_utils", "keras.src.callbacks.tensorboard"):
    sys.modules[name] = None  # as if a Keras release removed them
import keras_mtl
import keras_mtl.callbacks, keras_mtl.diagnostics, keras_mtl.multi_worker.backup
import keras_mtl.saved_model, keras_mtl.weighting
from keras_mtl.compat import KerasInternalsError, keras_callbacks
try:
    keras_callbacks.file_utils.exists("x")
except KerasInternalsError as error:
    print(error.name)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PACKAGE.parent,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "keras.src.utils.file_utils"


def test_layer_losses_are_read_and_cleared_through_the_overridden_methods():
    """`keras_mtl.compat.replica_losses` overrides `Layer._get_own_losses` and
    `Layer._clear_losses`: `model.losses` must read a term through them, and
    a new call must clear it."""
    import keras

    from keras_mtl.compat.replica_losses import ReplicaLocalLosses

    class Penalty(ReplicaLocalLosses, keras.layers.Layer):
        def call(self, x):
            self.add_replica_loss(keras.ops.sum(x))
            return x

    inputs = keras.Input((2,))
    model = keras.Model(inputs, Penalty()(inputs))
    model(keras.ops.ones((1, 2)))
    assert [float(loss) for loss in model.losses] == [2.0]
    model(keras.ops.full((1, 2), 3.0))
    assert [float(loss) for loss in model.losses] == [6.0]


def test_keras_tuner_oracles_draw_new_values_through_random_values(tmp_path):
    """`Oracle._random_values` and `Oracle._duplicate` (the reference trial)."""
    import keras_tuner as kt

    from keras_mtl.compat.keras_tuner_oracle import propose_defaults_first

    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("score", "min"), max_trials=3, seed=1
    )
    canary(
        hasattr(oracle, "_random_values") and hasattr(oracle, "_duplicate"),
        "Oracle._random_values / Oracle._duplicate",
        "the methods every built-in oracle draws and dedupes new values with",
    )
    space = kt.HyperParameters()
    space.Float("ratio", 0.1, 10.0, sampling="log", default=1.0)
    oracle.update_space(space)
    propose_defaults_first(oracle)
    oracle._set_project_dir(str(tmp_path), "search")  # What a Tuner does.
    first = oracle.create_trial("tuner0")
    canary(
        first.hyperparameters.values == {"ratio": 1.0},
        "Oracle._random_values",
        "RandomSearchOracle.populate_space to take its values from it",
    )
    oracle.update_trial(first.trial_id, {"score": 1.0})
    oracle.end_trial(first)
    second = oracle.create_trial("tuner0")
    canary(
        second.hyperparameters.values["ratio"] != 1.0,
        "Oracle._duplicate",
        "True for values an earlier trial had",
    )
