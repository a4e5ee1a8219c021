"""Strategies: the default strategy against MirroredStrategy, same model and data.

MirroredStrategy with one replica is what `train.strategy = "mirrored"` gives on
one device (`"auto"` picks the default strategy there); goal: >= 0.95 of the
default strategy. The same network written in plain Keras runs under the same
two strategies beside it, so the table separates what tf.distribute costs any
Keras model from what keras-mtl adds. Two logical CPU replicas are
recorded for the record: on one CPU they share the same cores, so they measure
the cost of the multi-replica machinery, not a speed-up. On a machine with GPUs
the same benchmark compares the default strategy with MirroredStrategy over the
visible GPUs.
"""

import statistics

import tensorflow as tf

import keras_mtl

import harness
import workloads

keras_mtl.configure_cpu_replicas(2)


def _fit(config, replicas, strategy_name, plain=False):
    config = config.replace(
        [f"train.strategy={strategy_name}", f"train.replicas={replicas}"]
    )
    strategy = keras_mtl.make_strategy(config.train)
    datasets = keras_mtl.load_datasets(config, replicas=strategy.num_replicas_in_sync)
    timer = workloads.EpochTimer()
    if plain:
        with strategy.scope():
            model = workloads.plain_model(config, datasets.features)
    else:
        model = keras_mtl.build_model(config, datasets.features, strategy=strategy)
    model.fit(
        datasets.train,
        epochs=config.train.epochs,
        callbacks=[timer],
        verbose=0,
        shuffle=False,
    )
    return workloads.steps_per_epoch(datasets.train) / workloads.steady(timer, "train")


def run(quick=False):
    repeats = 1 if quick else 3
    gpus = len(tf.config.list_physical_devices("GPU"))
    two = "mirrored, 2 replicas" + ("" if gpus else " (logical CPUs)")
    variants = {
        "default": (0, "default"),
        "mirrored, 1 replica": (1, "mirrored"),
        two: (2, "mirrored"),
    }
    plain_variants = ("default", "mirrored, 1 replica")
    rows, results = [], {}
    for label, config in workloads.workload_configs(
        epochs=2 if quick else 4, mlp_epochs=None if quick else 12
    ).items():
        samples = {name: [] for name in variants}
        samples.update({f"plain Keras, {name}": [] for name in plain_variants})
        for _ in range(repeats):
            for name, (replicas, strategy_name) in variants.items():
                samples[name].append(_fit(config, replicas, strategy_name))
                if name in plain_variants:
                    samples[f"plain Keras, {name}"].append(
                        _fit(config, replicas, strategy_name, plain=True)
                    )
        rates = {name: statistics.median(values) for name, values in samples.items()}
        results[label] = {"steps_per_second": rates, "samples": samples}
        for name in variants:
            plain = rates.get(f"plain Keras, {name}")
            rows.append(
                [
                    label,
                    name,
                    f"{rates[name]:.1f}",
                    f"{plain:.1f}" if plain else "-",
                    f"{rates[name] / rates['default']:.3f}",
                    f"{plain / rates['plain Keras, default']:.3f}" if plain else "-",
                    f"**{rates[name] / plain:.3f}**" if plain else "-",
                ]
            )
    table = harness.markdown_table(
        [
            "workload",
            "strategy",
            "keras-mtl steps/s",
            "plain Keras steps/s",
            "keras-mtl / its default",
            "plain Keras / its default",
            "keras-mtl / plain Keras",
        ],
        rows,
    )
    note = (
        f"Median over {repeats} interleaved runs of steady-state epochs (12 for "
        "adult, 4 for shapes unless --quick); same global batch. Goal: mirrored with 1 replica >= 0.95 of default. On CPU "
        "tf.distribute's per-step cost is the same for plain Keras (compare the "
        'two `/ its default` columns), so `train.strategy = "auto"` uses the '
        "default strategy on one device."
    )
    return {
        "title": "Strategy overhead",
        "markdown": f"{table}\n\n{note}",
        "results": results,
    }
