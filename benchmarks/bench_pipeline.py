"""Input pipeline: the real tf.data pipeline against the same batches in memory.

The in-memory twin holds the training batches as tensors already materialised
(`Dataset.from_tensor_slices` over a list of batches), so any difference is the
cost of reading, decoding and shuffling. Both are fitted as `keras_mtl.train`
fits: the epochs one after another in one iterator
(`keras_mtl.data.repeat_epochs`, `steps_per_epoch`). Each is timed with one
training step per call and with the default `train.steps_per_execution`
("auto"), where the steps are cheaper and the pipeline's share larger; and,
for the record, with "auto" and a new iterator every epoch, as a plain
`fit(dataset)` makes (tf.data then instantiates the pipeline's functions and
waits for its first batch at every epoch's start). Goal: pipeline / memory
>= 0.95.

The image-file rows write 3,000 `shapes` images as PNG files to a temporary
directory (`data.source = "images"`, 32x32) and train the shapes CNN on them:
with `data.cache = false` every epoch reads, decodes and resizes each file;
with `data.cache = true` the decoded images are held in memory after the first
pass. The same files also train a keras.applications backbone as the Trunk
(MobileNetV3Small, random weights), whose heavier steps are what the
image-file source is for.
"""

import statistics
import tempfile
import time

import tensorflow as tf

import keras_mtl

import harness
import workloads

# (train.steps_per_execution, one iterator for all epochs)
MODES = ((1, True), ("auto", True), ("auto", False))


def _mode(spe, one_iterator):
    return f"spe={spe}" + ("" if one_iterator else ", iterator per epoch")


def _in_memory(dataset):
    batches = list(dataset)
    stacked = tf.nest.map_structure(lambda *parts: tf.stack(parts), *batches)
    return tf.data.Dataset.from_tensor_slices(stacked).prefetch(tf.data.AUTOTUNE)


def _fit(config, datasets, train, steps_per_execution, one_iterator):
    value = f'"{steps_per_execution}"' if steps_per_execution == "auto" else 1
    config = config.replace([f"train.steps_per_execution={value}"])
    timer = workloads.EpochTimer()
    model = keras_mtl.build_model(config, datasets.features)
    steps = None
    if one_iterator:
        train, steps = keras_mtl.data.repeat_epochs(train)
    model.fit(
        train,
        steps_per_epoch=steps,
        epochs=config.train.epochs,
        callbacks=[timer],
        verbose=0,
        shuffle=False,
    )
    return workloads.steps_per_epoch(datasets.train) / workloads.steady(timer, "train")


def _cpu_ms_per_batch(dataset, passes=3):
    """CPU milliseconds the pipeline alone spends per batch (best of
    `passes` epochs after one warm-up epoch). Unlike steps/s it hardly moves
    with other load on the machine; where training saturates the CPU too, the
    ratio cannot exceed 1 / (1 + pipeline CPU / step CPU)."""
    batches = sum(1 for _ in dataset)
    best = float("inf")
    for _ in range(passes):
        start = time.process_time()
        for _ in dataset:
            pass
        best = min(best, time.process_time() - start)
    return 1000 * best / batches


IMAGE_FILES = 3000


BACKBONE = "keras.applications.MobileNetV3Small"


def image_file_configs(epochs):
    """`{label: config}`: the shapes CNN on PNG files, streamed and cached,
    and a backbone Trunk (MobileNetV3Small, random weights) on them."""
    from keras_mtl.data.shapes.files import write_image_files

    directory = tempfile.mkdtemp(prefix="keras-mtl-bench-images-")
    path = write_image_files(directory, IMAGE_FILES)
    common = [
        "data.source=images",
        f"data.path={path}",
        "data.image_size=[32, 32]",
        f"train.epochs={epochs}",
        f"train.run_dir={directory}/runs",
        "train.shuffle=true",
    ]
    configs = {
        f"shapes PNG files, {mode} (cnn)": keras_mtl.load_config(
            "shapes", [*common, f"data.cache={str(mode == 'cached').lower()}"]
        )
        for mode in ("streamed", "cached")
    }
    backbone = [*common, f"model.trunk={BACKBONE}", "model.trunk_weights=none"]
    for mode in ("streamed", "cached"):
        configs[f"shapes PNG files, {mode} (MobileNetV3Small)"] = keras_mtl.load_config(
            "shapes", [*backbone, f"data.cache={str(mode == 'cached').lower()}"]
        )
    return configs


def _source(config):
    return {"csv": "CSV", "images": "PNG files"}.get(config.data.source, "TFDS")


def run(quick=False, only=None, repeats=None):
    """Measures every workload, or those whose label contains `only`, with
    `repeats` interleaved pairs of runs (default 3; 1 when `quick`)."""
    repeats = repeats or (1 if quick else 3)
    epochs = 2 if quick else 4
    configs = workloads.workload_configs(
        epochs=epochs, mlp_epochs=None if quick else 12
    )
    configs.update(image_file_configs(epochs))
    if only:
        configs = {label: c for label, c in configs.items() if only in label}
    rows, results = [], {}
    for label, config in configs.items():
        datasets = keras_mtl.load_datasets(config)
        memory = _in_memory(datasets.train)
        samples = {
            f"{source} {_mode(*mode)}": []
            for mode in MODES
            for source in ("pipeline", "memory")
        }
        for _ in range(repeats):  # interleaved
            for mode in MODES:
                for source, train in (("pipeline", datasets.train), ("memory", memory)):
                    samples[f"{source} {_mode(*mode)}"].append(
                        _fit(config, datasets, train, *mode)
                    )
        rates = {name: statistics.median(values) for name, values in samples.items()}
        cpu_ms = _cpu_ms_per_batch(datasets.train)
        first = {
            "pipeline": harness.first_element_cpu_ms(datasets.train),
            "memory": harness.first_element_cpu_ms(memory),
        }
        results[label] = {
            "steps_per_second": rates,
            "samples": samples,
            "pipeline_cpu_ms_per_batch": cpu_ms,
            "first_batch_cpu_ms": first,
        }
        ratios = [
            rates[f"pipeline {_mode(*mode)}"] / rates[f"memory {_mode(*mode)}"]
            for mode in MODES
        ]
        rows.append(
            [
                label,
                _source(config),
                f"{rates['pipeline spe=1']:.1f}",
                f"{rates['memory spe=1']:.1f}",
                f"**{ratios[0]:.3f}**",
                f"{rates['pipeline spe=auto']:.1f}",
                f"{rates['memory spe=auto']:.1f}",
                f"**{ratios[1]:.3f}**",
                f"{ratios[2]:.3f}",
                f"{cpu_ms:.2f}",
                f"{first['pipeline']:.1f} / {first['memory']:.1f}",
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
            "pipeline / memory, new iterator every epoch (spe auto)",
            "pipeline alone, CPU ms/batch",
            "new iterator + first batch, CPU ms: pipeline / memory",
        ],
        rows,
    )
    note = (
        f"Median over {repeats} interleaved runs of the median steady-state epoch "
        "(12 epochs for adult, 4 for shapes), with train.steps_per_execution 1 and "
        '"auto" (the default). Goal >= 0.95. Image files: '
        f"{IMAGE_FILES:,} shapes PNGs (32x32) on local disk; streamed, each "
        "epoch reads and decodes every file, cached (the default) decodes once. "
        f"{BACKBONE.split('.')[-1]}: the same files with a keras.applications "
        "backbone as the Trunk (random weights, 32x32). Both sides fit as "
        "keras_mtl.train does, with one iterator of the training batches for "
        "all epochs (keras_mtl.data.repeat_epochs); the column before the "
        "last fits with a new iterator every epoch instead, as a plain "
        "`fit(dataset)` does. The last column is what each new iterator "
        "costs: tf.data instantiates every function of the pipeline for it."
    )
    return {
        "title": "Input pipeline against batches in memory",
        "markdown": f"{table}\n\n{note}",
        "results": results,
    }
