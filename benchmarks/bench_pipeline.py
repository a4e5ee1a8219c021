"""Input pipeline: the real tf.data pipeline against the same batches in memory.

The in-memory twin holds the training batches as tensors already materialised
(`Dataset.from_tensor_slices` over a list of batches), so any difference is the
cost of reading, decoding and shuffling. Goal: pipeline / memory >= 0.95.
"""

import statistics

import tensorflow as tf

import keras_mtl

import harness
import workloads


def _in_memory(dataset):
    batches = list(dataset)
    stacked = tf.nest.map_structure(lambda *parts: tf.stack(parts), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked).prefetch(tf.data.AUTOTUNE)


def _fit(config, datasets, train):
    timer = workloads.EpochTimer()
    model = keras_mtl.build_model(config, datasets.features)
    model.fit(
        train, epochs=config.train.epochs, callbacks=[timer], verbose=0, shuffle=False
    )
    return workloads.steps_per_epoch(datasets.train) / workloads.steady(timer, "train")


def run(quick=False):
    repeats = 1 if quick else 3
    configs = workloads.workload_configs(
        epochs=2 if quick else 4, mlp_epochs=None if quick else 12
    )
    rows, results = [], {}
    for label, config in configs.items():
        datasets = keras_mtl.load_datasets(config)
        memory = _in_memory(datasets.train)
        samples = {"pipeline": [], "memory": []}
        for _ in range(repeats):
            samples["pipeline"].append(_fit(config, datasets, datasets.train))
            samples["memory"].append(_fit(config, datasets, memory))
        rates = {name: statistics.median(values) for name, values in samples.items()}
        results[label] = {"steps_per_second": rates, "samples": samples}
        source = "CSV" if config.data.source == "csv" else "TFDS"
        rows.append(
            [
                label,
                source,
                f"{rates['pipeline']:.1f}",
                f"{rates['memory']:.1f}",
                f"**{rates['pipeline'] / rates['memory']:.3f}**",
            ]
        )
    table = harness.markdown_table(
        [
            "workload",
            "source",
            "pipeline steps/s",
            "in-memory steps/s",
            "pipeline / memory",
        ],
        rows,
    )
    note = (
        f"Median over {repeats} interleaved runs of the median steady-state epoch "
        "(12 epochs for adult, 4 for shapes). Goal >= 0.95."
    )
    return {
        "title": "Input pipeline against batches in memory",
        "markdown": f"{table}\n\n{note}",
        "results": results,
    }
