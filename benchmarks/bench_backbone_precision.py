"""Backbone trunk: what `train.mixed_precision` and `train.jit_compile` do to a step.

The two-head model with `keras.applications.MobileNetV3Small` as the Trunk
(random weights, 32x32 images from `shapes`-sized synthetic data, batch 32,
default strategy) trains under four settings, timed in turn (interleaved
repeats, medians), as steps per second and the ratio to float32 without XLA.
Goal: none; it records what the options do on this machine. On a CPU,
float16 has no fast path and is expected to be slower; on a GPU with tensor
cores (and under XLA) the same options are the speed-ups they are meant to be:
run `benchmarks/gpu_check.py --mixed-precision` / `--jit-compile` there.
"""

import numpy as np
import tensorflow as tf

import keras_mtl
from keras_mtl.data.features import ImageFeature

import harness

BATCH = 32
SIDE = 32
VARIANTS = {
    "float32": [],
    "mixed_float16": ["train.mixed_precision=true"],
    "jit_compile": ["train.jit_compile=true"],
    "mixed_float16 + jit_compile": [
        "train.mixed_precision=true",
        "train.jit_compile=true",
    ],
}


def _dataset(config, steps):
    rng = np.random.default_rng(0)
    count = steps * BATCH
    images = rng.uniform(0, 255, (count, SIDE, SIDE, 3)).astype("float32")
    labels = {
        task.name: rng.integers(0, task.num_classes, count).astype("int32")
        for task in config.tasks
    }
    dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
    return dataset.batch(BATCH, drop_remainder=True).cache().repeat()


def _trainer(overrides, steps):
    config = keras_mtl.load_config(
        "shapes",
        [
            "model.trunk=keras.applications.MobileNetV3Small",
            "model.trunk_weights=none",
            "train.strategy=default",
            *overrides,
        ],
    )
    model = keras_mtl.build_model(config, (ImageFeature("image", (SIDE, SIDE, 3)),))
    dataset = _dataset(config, steps)

    def train():
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)

    return train


def run(quick=False):
    steps = 5 if quick else 10
    repeats = 1 if quick else 3
    trainers = {
        name: _trainer(overrides, steps) for name, overrides in VARIANTS.items()
    }
    times = harness.interleaved_times(trainers, repeats=repeats, warmup=1)
    base = times["float32"]
    rows, results = [], {}
    for name, seconds in times.items():
        results[name] = {
            "steps_per_second": round(steps / seconds, 2),
            "ratio_to_float32": round(base / seconds, 3),
        }
        rows.append(
            [name, results[name]["steps_per_second"], results[name]["ratio_to_float32"]]
        )
    table = harness.markdown_table(
        ["setting", "steps/s (batch 32, 32x32)", "speed vs float32"], rows
    )
    return {
        "title": "Backbone trunk: mixed precision and XLA on this machine",
        "markdown": (
            "keras.applications.MobileNetV3Small as the Trunk, one device, "
            f"{steps} steps per timed call, median of {repeats} interleaved "
            "repeats. A ratio < 1 is slower than float32.\n\n" + table
        ),
        "results": results,
        "steps": steps,
        "repeats": repeats,
    }
