"""One tf.data pipeline for every source: labels, cache, shuffle, batch, prefetch.

Every source's splits first pass the label stage (`keras_mtl.data.labels`:
missing and hidden labels, per-task sample weights, target scales).

With `data.cache = true` (the default) each split is read once and held in
memory as stacked tensors; every epoch shuffles the indices of the whole split
and gathers its batches from them (`_batches_from_memory`). With `data.cache = false` the split streams
from its source through a `data.shuffle_buffer`-element shuffle buffer, for
data larger than memory.

Training batches always drop the remainder, so every step sees a full global
batch that divides evenly over the replicas (an uneven batch changes the
gradient, biases per-task loss metrics, and as the first batch it crashes
Keras 3.15's symbolic build). Validation and test batches keep every example on
one replica and drop the remainder on several, for the same reasons.

Across several workers (`MultiWorkerMirroredStrategy`) every split uses
tf.data's `DATA` auto-shard policy, for files and in-memory sources alike:
each worker reads the split and keeps its slice of every global batch, so
global step k trains on the examples of single-process batch k, every worker
runs the same number of steps, and a seeded shuffle is the same everywhere.
The price is that every worker reads the whole split. Measured with
TensorFlow 2.21 / Keras 3.15, the alternatives fail: tf.data's default
(`AUTO`, by files) stops with "not enough for the required 2 shards" when a
split has fewer files than workers (and sharding by files would give workers
unequal step counts whenever files differ in size); an explicit
`shard(workers, index)` with the policy `OFF` trains on 8 of 15 steps an
epoch, because Keras counts steps on the unsharded dataset, and hiding that
count adds an empty last step that biases the per-task loss metrics.
"""

import dataclasses

import keras
import tensorflow as tf

from keras_mtl.data.csv_source import load_csv
from keras_mtl.data.image_files import decode_files, load_images
from keras_mtl.data.labels import apply_labels
from keras_mtl.data.tfds_source import load_tfds

_SHARD_BY_DATA = tf.data.Options()
_SHARD_BY_DATA.experimental_distribute.auto_shard_policy = (
    tf.data.experimental.AutoShardPolicy.DATA
)


@dataclasses.dataclass
class Datasets:
    """Batched splits of `(inputs, {task: label})` and what describes them.

    A missing label is `MISSING_LABEL` (-1) or NaN (`keras_mtl.data.labels`).

    Attributes:
        train: Shuffled (when `train.shuffle`) in an order set by `data.seed`
            and `train.seed`, batched, prefetched. Its batches are
            `(inputs, labels, {task: sample_weight})` when some task has a
            `class_weight` or a `sample_weight_column`.
        validation: Batched; None when the validation split is empty.
        test: Batched.
        features: One spec per model input (`keras_mtl.data.features`).
        class_names: Task name -> class names, or None for regression.
        sizes: Split name -> number of examples before batching (None where
            the source does not know).
        labelled: Split name -> task name -> number of examples that carry
            the task's label.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset
    features: tuple
    class_names: dict
    sizes: dict
    labelled: dict = dataclasses.field(default_factory=dict)


# A split up to this size gathers a whole epoch in one op per feature; a larger
# one gathers batch by batch, so that an epoch never holds a second copy of it.
EPOCH_GATHER_BYTES = 64 << 20


def _batches_from_memory(dataset, count, batch_size, drop_remainder, shuffle_seed):
    """Batches cut from the whole split held in memory as stacked tensors.

    Each epoch draws one permutation of the split's indices (a stateless
    shuffle, seeded from a stream that gives a new seed each epoch) and cuts
    it into batches. Shuffling and batching `count` dicts of tensors one
    element at a time instead took a third or more of each step of a small
    model on 2 CPU cores. It holds what `Dataset.cache()` would hold, and
    shuffles the whole split each epoch (no shuffle buffer).

    Keras makes a new iterator every epoch, and every `map` function of the
    pipeline is instantiated (and optimised by grappler) anew for it: about
    6-10 ms of CPU per function and per epoch, most of what separated an
    adult epoch from the same batches in memory
    (benchmarks/bench_pipeline.py). So unshuffled splits use no function at
    all (batches are slices of the stacked tensors), and a shuffled split
    that fits in `EPOCH_GATHER_BYTES` uses one: it gathers the epoch's
    permutation once per feature and slices the batches from it.
    """
    tensors = dataset.batch(count).get_single_element()
    if shuffle_seed is None:
        return _in_order_batches(tensors, count, batch_size, drop_remainder)
    # Shuffled batches are training batches: they always drop the rest.
    steps = count // batch_size

    def permutation(seed):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64), seed=tf.stack([seed, 0])
        )
        return order[: steps * batch_size]

    def gather(index):
        return tf.nest.map_structure(lambda t: tf.gather(t, index), tensors)

    seeds = tf.data.Dataset.random(
        seed=shuffle_seed, rerandomize_each_iteration=True
    ).take(1)
    if _nbytes(tensors) > EPOCH_GATHER_BYTES:
        index = seeds.map(lambda seed: tf.reshape(permutation(seed), [steps, -1]))
        return index.unbatch().map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    def epoch(seed):
        batches = tf.nest.map_structure(
            lambda t: tf.reshape(t, [steps, batch_size, *t.shape[1:]]),
            gather(permutation(seed)),
        )
        return tf.data.Dataset.from_tensor_slices(batches)

    return seeds.flat_map(epoch).apply(tf.data.experimental.assert_cardinality(steps))


def _in_order_batches(tensors, count, batch_size, drop_remainder):
    """The split's batches in order, sliced from its stacked tensors."""
    steps, rest = divmod(count, batch_size)
    full = steps * batch_size

    def cut(t):
        return tf.reshape(t[:full], [steps, batch_size, *t.shape[1:]])

    batches = tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(cut, tensors))
    if rest and not drop_remainder:
        last = tf.nest.map_structure(lambda t: t[full:], tensors)
        batches = batches.concatenate(tf.data.Dataset.from_tensors(last))
    return batches


def _nbytes(tensors):
    def size(t):
        if t.dtype == tf.string:
            return int(tf.reduce_sum(tf.strings.length(t))) + 8 * int(tf.size(t))
        return int(tf.size(t)) * t.dtype.size

    return sum(size(t) for t in tf.nest.flatten(tensors))


def load_datasets(config, replicas=1):
    """Builds the batched train, validation and test datasets for `config`.

    Args:
        config: A `keras_mtl.Config`.
        replicas: How many replicas share each global batch
            (`strategy.num_replicas_in_sync`).

    Returns:
        A `Datasets`.

    Example:

    ```python
    datasets = load_datasets(load_config("shapes/tiny"))
    inputs, labels = next(iter(datasets.train))
    ```
    """
    loaders = {"csv": load_csv, "images": load_images}
    loader = loaders.get(config.data.source, load_tfds)
    splits, features, class_names, sizes = loader(config)
    decode = None
    if config.data.source == "images":
        decode = decode_files(config.data.feature, tuple(config.data.image_size))
    splits, sizes, labelled, scales = apply_labels(config, splits, sizes, class_names)
    batch_size = config.train.batch_size
    if batch_size % replicas:
        raise ValueError(
            f"train.batch_size={batch_size} must be divisible by the number of "
            f"replicas ({replicas}) so that every replica gets an equal share."
        )
    if sizes["train"] is not None and sizes["train"] < batch_size:
        raise ValueError(
            f"The training split has {sizes['train']} examples, fewer than one "
            f"batch (train.batch_size={batch_size}); training drops incomplete "
            "batches. Lower train.batch_size or raise data.max_examples."
        )

    def finish(split, training):
        return _batched(config, splits[split], sizes[split], training, replicas, decode)

    return Datasets(
        train=finish("train", training=True),
        validation=finish("validation", False) if sizes["validation"] != 0 else None,
        test=finish("test", training=False),
        features=tuple(features) + scales,
        class_names=class_names,
        sizes=sizes,
        labelled=labelled,
    )


def repeat_epochs(dataset):
    """`(batches, steps_per_epoch)` that fit `dataset` with one iterator.

    Keras makes a new iterator of a finite dataset every epoch, and tf.data
    instantiates (and grappler optimises) every function of the pipeline for
    it, then waits for its first batch: on the adult MLP that fixed cost was
    about a fifth of an epoch (`benchmarks/bench_pipeline.py`). Repeated, the
    dataset's epochs follow one another in one iterator, each reshuffled
    (the per-epoch seed stream, `Dataset.shuffle`'s
    `reshuffle_each_iteration`) as a new iterator every epoch would be, and
    the next epoch's first batches are prefetched while the current one
    ends. (Keras' own epochs differ: it also makes a spare iterator at each
    epoch's end, which draws a seed of its own.) `fit(batches,
    steps_per_epoch=steps)` of a `MultiTaskModel` runs exactly `steps` steps
    an epoch whatever `steps_per_execution` is
    (`keras_mtl.compat.keras_trainer.ExactEpochSteps`).

    Args:
        dataset: A batched `tf.data.Dataset`, e.g. `Datasets.train`.

    Returns:
        `(endless dataset, steps of one epoch)`, or `(dataset, None)` when its
        number of batches is not known (it is then fitted as it is).

    Example:

    ```python
    batches, steps = repeat_epochs(datasets.train)
    model.fit(batches, steps_per_epoch=steps, epochs=3)
    ```
    """
    steps = int(dataset.cardinality())
    if steps <= 0:
        return dataset, None
    return dataset.repeat().prefetch(tf.data.AUTOTUNE), steps


def _batched(config, dataset, count, training, replicas, decode=None):
    """One split batched (and shuffled, for training) as `config` says.

    `decode` (image files: paths -> pixels) runs with parallel calls on the
    elements that are held in memory or, when streaming, after the shuffle,
    so that the shuffle buffer holds paths rather than images.
    """
    batch_size = config.train.batch_size
    shuffle = training and config.train.shuffle
    if shuffle:
        # TensorFlow derives a shuffle's order from its seed *and* the global
        # seed at the time the pipeline is built; fixing the global one here
        # makes the order a function of the config alone (train.seed and
        # data.seed), whoever built the pipeline when.
        keras.utils.set_random_seed(config.train.seed)
    size = batch_size
    if not training and replicas > 1 and count is not None:
        # A split smaller than one batch still gets one even batch.
        size = max(min(batch_size, count // replicas * replicas), replicas)
    drop_remainder = training or replicas > 1
    if decode is not None and config.data.cache:
        dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if config.data.cache and count:
        dataset = _batches_from_memory(
            dataset, count, size, drop_remainder, config.data.seed if shuffle else None
        )
    else:
        if config.data.cache:
            dataset = dataset.cache()
        if shuffle:
            dataset = dataset.shuffle(
                config.data.shuffle_buffer,
                seed=config.data.seed,
                reshuffle_each_iteration=True,
            )
        if decode is not None and not config.data.cache:
            dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        dataset = dataset.batch(size, drop_remainder=drop_remainder)
    dataset = dataset.with_options(_SHARD_BY_DATA)  # Only used by workers.
    return dataset.prefetch(tf.data.AUTOTUNE)
