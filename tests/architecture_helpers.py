"""Tiny models of every architecture (`model.trunk` x `model.head2_input`) on
4 numeric inputs and two binary tasks, `click` then `conversion`."""

import keras
import numpy as np
import tensorflow as tf

import keras_mtl
from keras_mtl.config.loading import config_from_dict
from keras_mtl.data.features import NumericFeature

FEATURES = tuple(NumericFeature(f"x{i}", 0.0, 1.0) for i in range(4))
TASKS = ("click", "conversion")
# (trunk, head2_input): each new trunk and each new link.
ARCHITECTURES = [
    ("mmoe", "features"),
    ("ple", "features+prediction"),
    ("mlp", "esmm"),
    ("mlp", "aitm"),
    ("ple", "esmm"),
    ("mmoe", "aitm"),
]
IDS = [f"{trunk}-{link}" for trunk, link in ARCHITECTURES]


def tiny_config(trunk="mmoe", link="features", replicas=1, extra=()):
    base = keras_mtl.load_config("funnel_esmm").to_dict()
    overrides = [
        f"model.trunk={trunk}",
        f"model.head2_input={link}",
        "model.width=8",
        "model.depth=1",
        "model.head_units=8",
        "model.experts=3",
        "model.expert_units=8",
        "model.ple_levels=2",
        "train.learning_rate=0.01",
        f"train.replicas={replicas}",
        *extra,
    ]
    return config_from_dict(base, "<test>", overrides)


def build(trunk="mmoe", link="features", replicas=1, extra=()):
    """The model of `tiny_config`, seeded, under its strategy."""
    config = tiny_config(trunk, link, replicas, extra)
    strategy = keras_mtl.make_strategy(config.train)
    keras.utils.set_random_seed(0)
    return keras_mtl.build_model(config, FEATURES, strategy=strategy), config


def toy_data(examples=64, seed=0):
    """`(inputs, labels)`: a conversion only where there is a click."""
    rng = np.random.default_rng(seed)
    inputs = {f"x{i}": rng.normal(size=examples).astype("float32") for i in range(4)}
    click = (rng.random((examples, 1)) < 0.5).astype("float32")
    conversion = click * (rng.random((examples, 1)) < 0.5)
    return inputs, {"click": click, "conversion": conversion.astype("float32")}


def batches(data, batch_size=16):
    return tf.data.Dataset.from_tensor_slices(data).batch(
        batch_size, drop_remainder=True
    )
