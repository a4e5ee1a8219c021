"""What a tf.data function costs each time an iterator is made.

    python benchmarks/tf_data_function_cost.py [--no-grappler]

Keras makes a new iterator of the training dataset every epoch, and tf.data
instantiates every function of the pipeline for it. This prints the median
CPU milliseconds to make an iterator and take its first element for a few
one-element pipelines, which differ only in how many tensors cross the
function's boundary, and how big they are (with `--no-grappler`, the same
with TensorFlow's graph optimiser turned off for the whole process, as a
measure of its share); then what the epoch's shuffle of
adult's training split costs, column type by column type (the permutation and
one gather per column, as `keras_mtl.data.pipeline` draws it every epoch).
"""

import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from harness import first_element_cpu_ms  # noqa: E402

ROWS = 22_800  # about adult's training split


def main():
    large = {f"s{i}": tf.strings.as_string(tf.range(ROWS) % 7) for i in range(6)}
    large.update({f"f{i}": tf.random.uniform([ROWS]) for i in range(6)})
    small = {name: tensor[:10] for name, tensor in large.items()}
    seeds = tf.data.Dataset.random(seed=1, rerandomize_each_iteration=True).take(1)

    def first_rows(tensors):
        return lambda seed: tf.data.Dataset.from_tensors(
            {name: t[0] for name, t in tensors.items()}
        )

    stacked = tf.stack([large[f"f{i}"] for i in range(6)], axis=1)
    strings = tf.stack([large[f"s{i}"] for i in range(6)], axis=1)

    def unpack(text, number):
        return {
            **{f"s{i}": text[i] for i in range(6)},
            **{f"f{i}": number[i] for i in range(6)},
        }

    packed = seeds.flat_map(
        lambda seed: tf.data.Dataset.from_tensors((strings[0], stacked[0]))
    )
    cases = {
        "no function (from_tensor_slices of 12 tensors)": (
            tf.data.Dataset.from_tensor_slices(large).batch(256)
        ),
        "flat_map capturing nothing": seeds.flat_map(tf.data.Dataset.from_tensors),
        "flat_map capturing 1 tensor (22,800 x 6 floats)": seeds.flat_map(
            lambda seed: tf.data.Dataset.from_tensors(stacked[0])
        ),
        "flat_map capturing 12 tensors of 22,800 rows": seeds.flat_map(
            first_rows(large)
        ),
        "flat_map capturing 12 tensors of 10 rows": seeds.flat_map(first_rows(small)),
        "flat_map with the 12 tensors as an element": tf.data.Dataset.zip(
            seeds, tf.data.Dataset.from_tensors(large)
        ).flat_map(
            lambda seed, tensors: tf.data.Dataset.from_tensors(
                {name: t[0] for name, t in tensors.items()}
            )
        ),
        "flat_map of 2 packed tensors (one per type)": packed,
        "the same, then a map that unpacks the 12": packed.map(unpack),
    }
    print("| pipeline | new iterator + first element, CPU ms (median of 30) |")
    print("|---|---|")
    for label, dataset in cases.items():
        print(f"| {label} | {first_element_cpu_ms(dataset, passes=30):.1f} |")


def adult_shuffle():
    """CPU ms of one epoch's permutation and gathers of adult's training
    split, by which columns are gathered (median of 30 after a warm-up)."""
    import keras_mtl

    import workloads

    config = workloads.workload_configs()["adult (mlp)"]
    in_order = keras_mtl.load_datasets(config.replace(["train.shuffle=false"]))
    features, labels = tf.nest.map_structure(
        lambda *parts: tf.concat(parts, 0), *list(in_order.train)
    )
    rows = int(next(iter(labels.values())).shape[0])
    strings = {k: v for k, v in features.items() if v.dtype == tf.string}
    numbers = {k: v for k, v in {**features, **labels}.items() if k not in strings}
    print(f"\n| adult's epoch shuffle ({rows:,} rows) | CPU ms (median of 30) |")
    print("|---|---|")
    cases = {
        "the permutation alone": {},
        f"permutation + {len(numbers)} numeric columns and labels": numbers,
        f"permutation + {len(strings)} string columns": strings,
        "permutation + every column": {**numbers, **strings},
    }
    for label, columns in cases.items():

        @tf.function
        def shuffle(seed, columns=columns):
            order = tf.random.experimental.stateless_shuffle(
                tf.range(rows, dtype=tf.int64), seed=tf.stack([seed, 0])
            )
            return order, {k: tf.gather(v, order) for k, v in columns.items()}

        shuffle(tf.constant(0, tf.int64))
        samples = []
        for seed in range(30):
            start = time.process_time()
            shuffle(tf.constant(seed, tf.int64))
            samples.append(time.process_time() - start)
        print(f"| {label} | {1000 * statistics.median(samples):.1f} |")


if __name__ == "__main__":
    if "--no-grappler" in sys.argv:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    main()
    adult_shuffle()
