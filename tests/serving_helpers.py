"""Tiny exported models and small helpers shared by the serving tests."""

import shutil
import socket
from pathlib import Path

import keras
import numpy as np

import keras_mtl
from keras_mtl.data.features import CategoricalFeature, ImageFeature, NumericFeature

WORKCLASSES = ("Private", "State-gov", "Self-emp-not-inc")
TABULAR_FEATURES = (
    NumericFeature("age", 38.6, 186.0),
    NumericFeature("hours-per-week", 40.4, 152.0),
    CategoricalFeature("workclass", WORKCLASSES),
)
IMAGE_FEATURES = (ImageFeature("image", (8, 8, 3)),)


def export_tabular(base_dir, seed=0, name="tabular"):
    """An adult-like model (floats and strings, hyphenated names), exported."""
    keras.utils.set_random_seed(seed)
    config = keras_mtl.load_config(
        "adult", ["model.width=8", "model.depth=1", "model.head_units=8"]
    )
    model = keras_mtl.build_model(config, TABULAR_FEATURES)
    return keras_mtl.export_saved_model(model, base_dir, name)


def export_image(base_dir, seed=0, name="image"):
    """A shapes-like model with one image input, exported."""
    keras.utils.set_random_seed(seed)
    config = keras_mtl.load_config(
        "shapes", ["model.width=4", "model.depth=1", "model.head_units=8"]
    )
    model = keras_mtl.build_model(config, IMAGE_FEATURES)
    return keras_mtl.export_saved_model(model, base_dir, name)


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
