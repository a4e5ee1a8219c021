"""The tiny two-task MLP and data that the weighting tests train: the adult
preset's tasks (7-class marital status, binary income) on 4 numeric inputs."""

import keras
import numpy as np
import tensorflow as tf

import keras_mtl
from keras_mtl import tasks
from keras_mtl.data.features import NumericFeature

FEATURES = tuple(NumericFeature(f"x{i}", 0.0, 1.0) for i in range(4))
TASKS = ["marital_status", "income"]


def tiny_config(method="static", replicas=1, extra=()):
    return keras_mtl.load_config(
        "adult",
        [
            f"weighting.method={method}",
            "model.width=8",
            "model.head_units=8",
            "train.learning_rate=0.01",
            f"train.replicas={replicas}",
            *extra,
        ],
    )


def build(method="static", replicas=1, extra=()):
    """The model of `tiny_config`, seeded, under its strategy."""
    config = tiny_config(method, replicas, extra)
    strategy = keras_mtl.make_strategy(config.train)
    keras.utils.set_random_seed(0)
    return keras_mtl.build_model(config, FEATURES, strategy=strategy)


def toy_data(examples=64, seed=0, missing=False, no_income_rows=0):
    """`(inputs, labels)` arrays. With `missing`, half of each task's labels
    are missing at random, and the first `no_income_rows` rows carry no
    income label at all."""
    rng = np.random.default_rng(seed)
    inputs = {f"x{i}": rng.normal(size=examples).astype("float32") for i in range(4)}
    marital = rng.integers(0, 7, examples).astype("int32")
    income = rng.integers(0, 2, (examples, 1)).astype("float32")
    if missing:
        marital[rng.random(examples) < 0.5] = tasks.MISSING_LABEL
        income[rng.random(examples) < 0.5] = np.nan
        income[:no_income_rows] = np.nan
    return inputs, {"marital_status": marital, "income": income}


def masked_data(examples=64, seed=0):
    """Half of each task's labels missing; rows 0-7 (the first replica's half
    of the first batch of 16) carry no income label at all."""
    return toy_data(examples, seed, missing=True, no_income_rows=8)


def batches(data, batch_size=16):
    """Unshuffled batches of `data`, the remainder dropped."""
    return tf.data.Dataset.from_tensor_slices(data).batch(
        batch_size, drop_remainder=True
    )
