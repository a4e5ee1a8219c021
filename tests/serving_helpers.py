"""Tiny exported models and small helpers shared by the serving tests."""

import shutil
import socket
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_mtl
from keras_mtl.data.features import CategoricalFeature, ImageFeature, NumericFeature

WORKCLASSES = ("Private", "State-gov", "Self-emp-not-inc")
TABULAR_FEATURES = (
    NumericFeature("age", 38.6, 186.0),
    NumericFeature("hours-per-week", 40.4, 152.0),
    CategoricalFeature("workclass", WORKCLASSES),
)
IMAGE_FEATURES = (ImageFeature("image", (8, 8, 3)),)


TINY_TABULAR = ("model.width=8", "model.depth=1", "model.head_units=8")
TINY_IMAGE = ("model.width=4", "model.depth=1", "model.head_units=8")


def _export(preset, tiny, features, base_dir, seed, name, overrides, class_names, rows):
    """A tiny model of `preset`, exported; with `class_names` (task name ->
    names, {} for none) a classify / regress signature per task, and with
    `rows` warm-up records of them."""
    keras.utils.set_random_seed(seed)
    config = keras_mtl.load_config(preset, [*tiny, *overrides])
    model = keras_mtl.build_model(config, features)
    classify_tasks = None
    if class_names is not None:
        classify_tasks = [
            {"name": t.name, "kind": t.kind, "class_names": class_names.get(t.name)}
            for t in config.tasks
        ]
    warmup = None
    if rows is not None:
        specs = {t.name: tf.TensorSpec(t.shape, t.dtype) for t in model.inputs}
        warmup = columns(rows, specs)
    return keras_mtl.export_saved_model(
        model, base_dir, name, classify_tasks=classify_tasks, warmup=warmup
    )


def export_tabular(
    base_dir, seed=0, name="tabular", overrides=(), class_names=None, rows=None
):
    """An adult-like model (floats and strings, hyphenated names), exported
    (see `_export` for the rest)."""
    return _export(
        "adult", TINY_TABULAR, TABULAR_FEATURES, base_dir, seed, name, overrides,
        class_names, rows,
    )  # fmt: skip


def export_image(base_dir, seed=0, name="image", class_names=None):
    """A shapes-like model with one image input, exported."""
    return _export(
        "shapes", TINY_IMAGE, IMAGE_FEATURES, base_dir, seed, name, (), class_names,
        None,
    )  # fmt: skip


def model_server(models, version_labels=None, **options):
    """A `ModelServer` (a context manager) of `models` (name -> version
    directory) on free REST and gRPC ports."""
    from keras_mtl.serving import ModelServer, ServedModelConfig

    configs = [
        ServedModelConfig(name, str(path.parent), version_labels=version_labels or {})
        for name, path in models.items()
    ]
    return ModelServer(
        configs,
        rest_api_port=free_port(),
        grpc_port=free_port(),
        poll_wait_seconds=0,
        **options,
    )


def tabular_rows(count=3, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "age": float(rng.integers(17, 90)),
            "hours-per-week": float(rng.integers(1, 99)),
            "workclass": WORKCLASSES[int(rng.integers(len(WORKCLASSES)))],
        }
        for _ in range(count)
    ]


def image_batch(count=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (count, 8, 8, 3)).astype("float32")


def columns(rows, specs):
    """Rows -> name -> numpy array of the signature's dtype."""
    return {
        name: np.array(
            [row[name] for row in rows],
            dtype=object if spec.dtype.name == "string" else spec.dtype.as_numpy_dtype,
        )
        for name, spec in specs.items()
    }


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def copy_version(source, model_dir, version):
    """Copies a version directory in as `version`, atomically (temp + rename)."""
    model_dir = Path(model_dir)
    temporary = model_dir / f".tmp-copy-{version}"
    shutil.copytree(source, temporary)
    temporary.rename(model_dir / str(version))
    return model_dir / str(version)
