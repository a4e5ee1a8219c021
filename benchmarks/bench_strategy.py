"""Strategies: the default strategy against MirroredStrategy, same model and data.

MirroredStrategy with one replica is what `train.strategy = "mirrored"` gives on
one device; goal: >= 0.95 of the default strategy. Two logical CPU replicas are
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


def _fit(config, replicas, strategy_name):
    config = config.replace(
        [f"train.strategy={strategy_name}", f"train.replicas={replicas}"]
    )
    strategy = keras_mtl.make_strategy(config.train)
    datasets = keras_mtl.load_datasets(config, replicas=strategy.num_replicas_in_sync)
    timer = workloads.EpochTimer()
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
    variants = {"default": (0, "default"), "mirrored, 1 replica": (1, "mirrored")}
    variants["mirrored, 2 replicas" + ("" if gpus else " (logical CPUs)")] = (
        2,
        "mirrored",
    )
    rows, results = [], {}
    for label, config in workloads.workload_configs(epochs=2 if quick else 4).items():
        samples = {name: [] for name in variants}
        for _ in range(repeats):
            for name, (replicas, strategy_name) in variants.items():
                samples[name].append(_fit(config, replicas, strategy_name))
        rates = {name: statistics.median(values) for name, values in samples.items()}
        results[label] = {"steps_per_second": rates, "samples": samples}
        default = rates["default"]
        rows += [
            [
                label,
                name,
                f"{rate:.1f}",
                f"**{rate / default:.3f}**"
                if "1 replica" in name
                else f"{rate / default:.3f}",
            ]
            for name, rate in rates.items()
        ]
    table = harness.markdown_table(
        ["workload", "strategy", "steps/s", "/ default"], rows
    )
    note = (
        f"Median over {repeats} interleaved runs of steady-state epochs; same global batch. "
        "Goal: mirrored with 1 replica >= 0.95 of default."
    )
    return {
        "title": "Strategy overhead",
        "markdown": f"{table}\n\n{note}",
        "results": results,
    }
