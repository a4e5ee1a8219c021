"""Any TFDS dataset with one input feature and two label features.

`cifar100` gives `image` -> (`coarse_label`, `label`); the embedded `shapes`
builder gives the same keys. A label equal to `tasks.*.missing_label` (or a
negative class label) is missing: `MISSING_LABEL` in an integer label, NaN in
a float one. The validation split is carved from the end of the
training split. A dataset that is not prepared is downloaded when
`data.download` is true and the network answers; offline, this fails at once
with a message that says how to prepare the data elsewhere, instead of TFDS's
minutes of retries.
"""

import socket

import tensorflow as tf
import tensorflow_datasets as tfds

import keras_mtl.data.funnel  # noqa: F401  (registers the embedded builders)
import keras_mtl.data.shapes  # noqa: F401
import keras_mtl.data.synthetic  # noqa: F401
from keras_mtl.config import resolve_path
from keras_mtl.data.features import ImageFeature, VectorFeature
from keras_mtl.tasks import MISSING_LABEL

# Builders in this package: generated here, never downloaded.
EMBEDDED = ("shapes", "mmoe_synthetic", "funnel")
# TFDS first looks for prepared datasets on Google Cloud Storage.
_PROBE_HOST = ("storage.googleapis.com", 443)


def network_available(timeout=3.0):
    """Whether TFDS's download host answers within `timeout` seconds."""
    try:
        socket.create_connection(_PROBE_HOST, timeout=timeout).close()
    except OSError:
        return False
    return True


def _prepare(builder, config):
    if builder.is_prepared():
        return
    name = config.data.dataset
    if builder.name not in EMBEDDED:
        where = builder.data_dir
        hint = (
            f"Prepare it on a machine with internet (`tfds build {name} "
            f"--data_dir DIR`), copy DIR here and set data.data_dir=DIR."
        )
        if not config.data.download:
            raise ValueError(
                f"TFDS dataset {name!r} is not prepared in {where} and "
                f"data.download is false. {hint}"
            )
        if not network_available():
            raise ValueError(
                f"TFDS dataset {name!r} is not prepared in {where} and the network "
                f"is unreachable ({_PROBE_HOST[0]} does not answer). {hint}"
            )
    builder.download_and_prepare()


def _label_names(info, key):
    feature = info.features[key]
    return (
        list(feature.names) if isinstance(feature, tfds.features.ClassLabel) else None
    )


def _split_names(data, splits_info):
    """TFDS split strings for train / validation / test, and their sizes.

    With known split sizes the validation split is the last
    `validation_fraction` of the training examples; without them (datasets
    mocked by `tfds.testing.mock_data` carry none) it is the last whole
    percent, and the sizes are None.
    """
    if not splits_info:
        percent = int(round(100 * data.validation_fraction))
        names = {
            "train": f"{data.train_split}[:{100 - percent}%]",
            "validation": f"{data.train_split}[{100 - percent}%:]",
            "test": data.test_split,
        }
        return names, {
            "train": None,
            "validation": None if percent else 0,
            "test": None,
        }
    total = splits_info[data.train_split].num_examples
    n_val = int(round(total * data.validation_fraction))
    n_train = total - n_val
    names = {
        "train": f"{data.train_split}[:{n_train}]",
        "validation": f"{data.train_split}[{n_train}:]",
        "test": data.test_split,
    }
    if data.max_examples:
        n_train = min(n_train, data.max_examples)
    sizes = {"train": n_train, "validation": n_val}
    sizes["test"] = splits_info[data.test_split].num_examples
    return names, sizes


def _label(value, task):
    """A task's label, `tasks.*.missing_label` turned into the missing value.

    A class label below 0 is missing too (`MISSING_LABEL`); a regression
    target is missing where it equals a `missing_label` other than the
    default -1 (a real target may be -1), or is NaN.
    """
    if value.dtype == tf.bool:
        value = tf.cast(value, tf.int32)
    if task.kind == "regression":
        value = tf.cast(value, tf.float32)
        missing = tf.math.is_nan(value)
        if task.missing_label != MISSING_LABEL:
            missing |= tf.equal(value, float(task.missing_label))
    else:
        missing = tf.less(value, 0) | tf.equal(
            value, tf.cast(task.missing_label, value.dtype)
        )
    if task.kind == "multiclass":
        return tf.where(missing, MISSING_LABEL, tf.cast(value, tf.int32))
    value = tf.cast(value, tf.float32)
    return tf.reshape(tf.where(missing, float("nan"), value), (1,))


def load_tfds(config):
    """Loads `config.data.dataset` into unbatched datasets and input specs.

    Returns:
        `(splits, features, class_names, sizes)` as `load_csv` does.
    """
    data = config.data
    data_dir = str(resolve_path(data.data_dir)) if data.data_dir else None
    try:
        builder = tfds.builder(data.dataset, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise ValueError(
            f"data.dataset={data.dataset!r} is not a TFDS dataset: {error}"
        ) from None
    _prepare(builder, config)
    info = builder.info
    class_names = _check_features(config, info)
    splits_info = info.splits
    for key in ("train_split", "test_split"):
        split = getattr(data, key)
        if splits_info and split not in splits_info:
            raise ValueError(
                f"data.{key}={split!r} is not a split of {data.dataset!r}. "
                f"Splits: {sorted(splits_info)}"
            )
    split_names, sizes = _split_names(data, splits_info)

    def to_example(example):
        inputs = {data.feature: tf.cast(example[data.feature], tf.float32)}
        labels = {}
        for task in config.tasks:
            labels[task.name] = _label(example[task.label_key], task)
        return inputs, labels

    splits = {
        split: builder.as_dataset(split=name, shuffle_files=False).map(
            to_example, num_parallel_calls=tf.data.AUTOTUNE
        )
        for split, name in split_names.items()
    }
    if data.max_examples:
        splits["train"] = splits["train"].take(data.max_examples)
    feature = info.features[data.feature]
    # An image, or a float vector (`mmoe_synthetic`, `funnel`).
    if isinstance(feature, tfds.features.Image):
        spec = ImageFeature(data.feature, tuple(feature.shape), tuple(data.augment))
    else:
        spec = VectorFeature(data.feature, tuple(feature.shape))
    return splits, (spec,), class_names, sizes


def _check_features(config, info):
    """Each task's class names, after checking that the configured features
    exist and that `num_classes` matches the dataset's."""
    data = config.data
    keys = [data.feature] + [task.label_key for task in config.tasks]
    for key, field in zip(
        keys, ["data.feature", "tasks.0.label", "tasks.1.label"], strict=True
    ):
        if key not in info.features:
            raise ValueError(
                f"{field}={key!r} is not a feature of TFDS dataset {data.dataset!r}. "
                f"Features: {sorted(info.features)}"
            )
    class_names = {}
    for task in config.tasks:
        names = _label_names(info, task.label_key)
        if task.kind == "multiclass" and names and len(names) != task.num_classes:
            raise ValueError(
                f"Task {task.name!r}: num_classes={task.num_classes} but "
                f"{data.dataset}:{task.label_key} has {len(names)} classes. "
                f"Set tasks.{task.name}.num_classes={len(names)}."
            )
        class_names[task.name] = names
    return class_names
