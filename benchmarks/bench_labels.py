"""Training step time with masked per-task losses, relative to Keras' own losses.

    python benchmarks/run_all.py labels [--quick]

Every keras-mtl loss skips the rows whose label is missing and averages over
the labelled rows of the global batch (`keras_mtl.tasks.MaskedLoss`). Three
models of the same weights, on the adult MLP (7-class and binary heads, batch
256 of 4 numeric columns) and on the shapes CNN (batch 128 of 32x32x3), each
trained on one batch repeated (so the input pipeline costs nothing):

- `keras`: the same network compiled with Keras' built-in losses and metrics;
- `masked, complete`: keras-mtl's compile, every label present;
- `masked, half missing`: keras-mtl's compile, half of each task's labels
  missing (-1 / NaN) at random.

Timed in turn, rotating the order each round, medians compared. Target: both
masked variants at most 1.03x `keras`.
"""

from bench_weighting import rotated_times

import harness

TARGET = 1.03
VARIANTS = ("keras", "masked, complete", "masked, half missing")


def _workload(name):
    import numpy as np

    import keras_mtl
    from keras_mtl.data.features import NumericFeature

    rng = np.random.default_rng(0)
    if name == "adult":
        batch = 256
        config = keras_mtl.load_config("adult", [f"train.batch_size={batch}"])
        features = tuple(NumericFeature(f"x{i}", 0.0, 1.0) for i in range(4))
        inputs = {f"x{i}": rng.normal(size=batch).astype("float32") for i in range(4)}
        labels = {
            "marital_status": rng.integers(0, 7, batch).astype("int32"),
            "income": rng.integers(0, 2, (batch, 1)).astype("float32"),
        }
    else:
        batch = 128
        config = keras_mtl.load_config("shapes", [f"train.batch_size={batch}"])
        features = None
        inputs = {"image": rng.uniform(0, 255, (batch, 32, 32, 3)).astype("float32")}
        labels = {
            "coarse": rng.integers(0, 4, batch).astype("int32"),
            "fine": rng.integers(0, 12, batch).astype("int32"),
        }
    missing = {}
    for task, values in labels.items():
        values = values.copy()
        hide = rng.random(batch) < 0.5
        if values.dtype.kind == "f":
            values[hide] = np.nan
        else:
            values[hide] = -1
        missing[task] = values
    return config, features, inputs, labels, missing


def _keras_compile(model, config):
    import keras

    losses, metrics = {}, {}
    for task in config.tasks:
        if task.kind == "multiclass":
            losses[task.name] = keras.losses.SparseCategoricalCrossentropy()
            metrics[task.name] = [keras.metrics.SparseCategoricalAccuracy("accuracy")]
        else:
            losses[task.name] = keras.losses.BinaryCrossentropy()
            metrics[task.name] = [
                keras.metrics.AUC(name="auc"),
                keras.metrics.BinaryAccuracy("accuracy"),
            ]
    model.compile(
        optimizer=keras.optimizers.Adam(config.train.learning_rate),
        loss=losses,
        loss_weights={task.name: task.weight for task in config.tasks},
        metrics=metrics,
    )


def _measure(name, steps, rounds):
    import keras
    import tensorflow as tf

    import keras_mtl

    config, features, inputs, labels, missing = _workload(name)
    models = {}
    for variant in VARIANTS:
        keras.utils.set_random_seed(0)
        model = keras_mtl.build_model(config, features)
        if variant == "keras":
            model = keras.Model(model.input, model.output)
            _keras_compile(model, config)
        models[variant] = model
    data = {
        "keras": (inputs, labels),
        "masked, complete": (inputs, labels),
        "masked, half missing": (inputs, missing),
    }

    def timed(variant):
        dataset = tf.data.Dataset.from_tensors(data[variant]).repeat()
        return lambda: models[variant].fit(
            dataset, epochs=1, steps_per_epoch=steps, verbose=0
        )

    times = rotated_times({variant: timed(variant) for variant in VARIANTS}, rounds)
    return {variant: 1000 * seconds / steps for variant, seconds in times.items()}


def run(quick=False):
    steps, rounds = (10, 3) if quick else (60, 9)
    step_ms = {name: _measure(name, steps, rounds) for name in ("adult", "shapes")}
    rows, ratios = [], {}
    for name, times in step_ms.items():
        for variant in VARIANTS:
            ratio = times[variant] / times["keras"]
            ratios[f"{name}: {variant}"] = ratio
            met = "" if variant == "keras" else ("yes" if ratio <= TARGET else "NO")
            rows.append([name, variant, f"{times[variant]:.2f}", f"{ratio:.3f}", met])
    markdown = (
        f"Median over {rounds} interleaved rounds (rotating order) of {steps} "
        f"training steps{' (--quick)' if quick else ''}; target <= {TARGET}x "
        "Keras' own losses.\n\n"
        + harness.markdown_table(
            ["model", "losses", "ms / step", "x keras", "met"], rows
        )
    )
    return {
        "title": "Missing labels: masked-loss step time relative to Keras' losses",
        "markdown": markdown,
        "step_ms": step_ms,
        "ratios": ratios,
        "steps": steps,
        "rounds": rounds,
        "quick": quick,
    }


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
