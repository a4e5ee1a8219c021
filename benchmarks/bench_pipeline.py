"""Input pipeline: the real tf.data pipeline against the same batches in memory.

The in-memory twin holds the training batches as tensors already materialised
(`Dataset.from_tensor_slices` over a list of batches), so any difference is the
cost of reading, decoding and shuffling, including the per-epoch cost of
making the pipeline's iterator (Keras makes one every epoch). Each is timed
with one training step per call and with the default `train.steps_per_execution`
("auto"), where the steps are cheaper and the pipeline's share larger.
Goal: pipeline / memory >= 0.95.
"""

import statistics

import tensorflow as tf

import keras_mtl

import harness
import workloads

STEPS_PER_EXECUTION = (1, "auto")


def _in_memory(dataset):
    batches = list(dataset)
    stacked = tf.nest.map_structure(lambda *parts: tf.stack(parts), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked).prefetch(tf.data.AUTOTUNE)


def _fit(config, datasets, train, steps_per_execution):
    value = f'"{steps_per_execution}"' if steps_per_execution == "auto" else 1
    config = config.replace([f"train.steps_per_execution={value}"])
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
        samples = {
            f"{source} spe={spe}": []
            for spe in STEPS_PER_EXECUTION
            for source in ("pipeline", "memory")
        }
        for _ in range(repeats):  # interleaved
            for spe in STEPS_PER_EXECUTION:
                for source, train in (("pipeline", datasets.train), ("memory", memory)):
                    samples[f"{source} spe={spe}"].append(
                        _fit(config, datasets, train, spe)
                    )
        rates = {name: statistics.median(values) for name, values in samples.items()}
        results[label] = {"steps_per_second": rates, "samples": samples}
        source = "CSV" if config.data.source == "csv" else "TFDS"
        ratios = [
            rates[f"pipeline spe={spe}"] / rates[f"memory spe={spe}"]
            for spe in STEPS_PER_EXECUTION
        ]
        rows.append(
            [
                label,
                source,
                f"{rates['pipeline spe=1']:.1f}",
                f"{rates['memory spe=1']:.1f}",
                f"**{ratios[0]:.3f}**",
                f"{rates['pipeline spe=auto']:.1f}",
                f"{rates['memory spe=auto']:.1f}",
                f"**{ratios[1]:.3f}**",
            ]
        )
    table = harness.markdown_table(
        [
            "workload",
            "source",
            "pipeline steps/s (spe 1)",
            "in-memory steps/s (spe 1)",
            "pipeline / memory (spe 1)",
            "pipeline steps/s (spe auto)",
            "in-memory steps/s (spe auto)",
            "pipeline / memory (spe auto)",
        ],
        rows,
    )
    note = (
        f"Median over {repeats} interleaved runs of the median steady-state epoch "
        "(12 epochs for adult, 4 for shapes), with train.steps_per_execution 1 and "
        '"auto" (the default). Goal >= 0.95.'
    )
    return {
        "title": "Input pipeline against batches in memory",
        "markdown": f"{table}\n\n{note}",
        "results": results,
    }
