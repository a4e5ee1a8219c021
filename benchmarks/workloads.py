"""The workloads the speed benchmarks share: configs, plain Keras twins, timing.

`plain_model` builds, with stock Keras layers, the same network as
`keras_mtl.build_model` (same layer sizes, activations, optimizer and loss
weights), so that a ratio of the two measures keras-mtl's overhead and nothing
else.
"""

import os
import tempfile
import time
from pathlib import Path

import keras

import keras_mtl
from keras_mtl import tasks as task_lib
from keras_mtl.data import CategoricalFeature, ImageFeature, NumericFeature
from keras_mtl.models import CleanStrings, FillMissing, StandardizeImage

REPO = Path(__file__).resolve().parent.parent


def adult_csv():
    path = (
        os.environ.get("KERAS_MTL_ADULT_CSV")
        or REPO.parent / "shared/data/adult/adult.csv"
    )
    if not Path(path).is_file():
        raise SystemExit(f"UCI Adult CSV not found at {path}; set KERAS_MTL_ADULT_CSV")
    return Path(path)


def workload_configs(epochs=3, run_dir=None, mlp_epochs=None):
    """`{label: config}` for the mlp trunk on adult and the cnn trunk on shapes.

    `mlp_epochs` (default: `epochs`) gives adult more epochs: they last a
    fraction of a second, and a median over a dozen of them keeps a burst on a
    shared machine from deciding a ratio.
    """
    run_dir = run_dir or tempfile.mkdtemp(prefix="keras-mtl-bench-")
    common = [f"train.run_dir={run_dir}", "train.shuffle=true"]
    return {
        "adult (mlp)": keras_mtl.load_config(
            "adult",
            [
                f"data.path={adult_csv()}",
                f"train.epochs={mlp_epochs or epochs}",
                *common,
            ],
        ),
        "shapes (cnn)": keras_mtl.load_config(
            "shapes", [f"train.epochs={epochs}", *common]
        ),
    }


def _encode(features):
    # keras-mtl's own preprocessing layers: the comparison is about the trunk,
    # the heads and the training loop, so the inputs are encoded identically.
    inputs, encoded = {}, []
    for feature in features:
        if isinstance(feature, ImageFeature):
            inputs[feature.name] = keras.Input(feature.shape, name=feature.name)
            encoded.append(StandardizeImage()(inputs[feature.name]))
        elif isinstance(feature, NumericFeature):
            inputs[feature.name] = keras.Input((), name=feature.name)
            x = FillMissing(feature.mean)(inputs[feature.name])
            normalize = keras.layers.Normalization(
                mean=feature.mean, variance=feature.variance
            )
            encoded.append(normalize(x))
        elif isinstance(feature, CategoricalFeature):
            inputs[feature.name] = keras.Input((), dtype="string", name=feature.name)
            x = CleanStrings(feature.missing_values)(inputs[feature.name])
            lookup = keras.layers.StringLookup(
                vocabulary=list(feature.vocabulary), output_mode="one_hot"
            )
            encoded.append(lookup(x))
    x = keras.layers.Concatenate()(encoded) if len(encoded) > 1 else encoded[0]
    return inputs, x


def plain_model(config, features):
    """The keras-mtl network written with stock Keras layers only."""
    model_config = config.model
    inputs, x = _encode(features)
    if model_config.trunk == "cnn":
        for i in range(model_config.depth):
            x = keras.layers.Conv2D(
                model_config.width * 2**i, 3, padding="same", activation="relu"
            )(x)
            x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
    else:
        for _ in range(model_config.depth):
            x = keras.layers.Dense(model_config.width, activation="relu")(x)
    outputs = {}
    for task in config.tasks:
        for _ in range(model_config.head_depth):
            x = keras.layers.Dense(model_config.head_units, activation="relu")(x)
        outputs[task.name] = keras.layers.Dense(
            task_lib.output_units(task), activation=task_lib.output_activation(task)
        )(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(config.train.learning_rate),
        loss={task.name: task_lib.make_loss(task) for task in config.tasks},
        loss_weights={task.name: task.weight for task in config.tasks},
        metrics={task.name: task_lib.make_metrics(task) for task in config.tasks},
        jit_compile=False,
    )
    return model


def standard_callbacks(directory):
    """The Keras callbacks keras-mtl's `train` adds, for a like-for-like plain run."""
    directory = Path(directory)
    return [
        keras.callbacks.BackupAndRestore(str(directory / "backup")),
        keras.callbacks.ModelCheckpoint(
            str(directory / "best.keras"), save_best_only=True
        ),
        keras.callbacks.TensorBoard(str(directory / "logs"), profile_batch=0),
        keras.callbacks.CSVLogger(str(directory / "history.csv")),
    ]


class EpochTimer(keras.callbacks.Callback):
    """Times each epoch's phases: training steps, validation, epoch-end work.

    `train` is from the start of the epoch to the start of validation (the
    steps alone), `validation` the evaluation, and `end` what the callbacks
    before this one did at the end of the epoch (checkpoints, logs), so put
    this callback last.
    """

    def __init__(self):
        super().__init__()
        self.phases = []

    def on_epoch_begin(self, epoch, logs=None):
        self._marks = {"begin": time.perf_counter()}

    def on_test_begin(self, logs=None):
        if hasattr(self, "_marks"):
            self._marks["test_begin"] = time.perf_counter()

    def on_test_end(self, logs=None):
        if hasattr(self, "_marks"):
            self._marks["test_end"] = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now, marks = time.perf_counter(), self._marks
        test_begin = marks.get("test_begin", now)
        test_end = marks.get("test_end", now)
        self.phases.append(
            {
                "train": test_begin - marks["begin"],
                "validation": test_end - test_begin,
                "end": now - test_end,
                "epoch": now - marks["begin"],
            }
        )


def steady(timer, phase="train"):
    """Median of a phase over the epochs after the first (which traces)."""
    values = sorted(p[phase] for p in timer.phases[1:]) or [timer.phases[0][phase]]
    return values[len(values) // 2]


def steps_per_epoch(dataset):
    return int(dataset.cardinality())
