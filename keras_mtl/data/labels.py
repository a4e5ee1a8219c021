"""Labels as real data has them: missing, partly hidden, weighted, scaled.

`apply_labels` runs on every source's unbatched splits before batching. It
reads each split's labels once (labels only, into NumPy) and then:

- drops the rows that carry no label for any task (`data.missing_labels =
  "mask"`) or miss any (`"drop"`); the CSV source has already dropped its own;
- hides labels for `data.label_fraction`: for each listed task and each split
  in `data.label_fraction_splits`, a seeded permutation of the split's
  labelled rows keeps the first `round(fraction * labelled)` (at least one).
  The draw depends on `data.seed`, the task's name, the split and which rows
  carry the task's label, so every epoch, weighting method and single-task
  baseline of a config sees the same labels; a smaller fraction keeps a subset
  of a larger one's rows;
- counts the labelled rows of each task and split (`Datasets.labelled`), and
  refuses a task without any in the training split, or in a non-empty
  validation split that `train.monitor` reads;
- turns `tasks.*.class_weight` and the source's per-row weights
  (`tasks.*.sample_weight_column`) into per-task sample weights on the
  training split, whose elements become `(inputs, labels, {task: weight})`:
  Keras refuses `class_weight` for a model with several outputs but takes a
  dict of per-output sample weights. Validation and test stay
  `(inputs, labels)`: weights shape the training loss only, as Keras'
  `class_weight` does;
- gives each regression task with `normalize` a `TargetScale` (mean and
  standard deviation of its labelled training rows).

A missing label is `MISSING_LABEL` (-1) in an integer label and NaN in a float
one (binary 0/1 labels, regression targets), what `keras_mtl.tasks` masks.
"""

import logging
import zlib

import numpy as np
import tensorflow as tf

from keras_mtl.data.features import TargetScale
from keras_mtl.tasks import MISSING_LABEL

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


def is_labelled(values, kind):
    """NumPy twin of `keras_mtl.tasks.labelled`: one bool per row."""
    values = np.asarray(values, np.float64).reshape(-1)  # One label per row.
    if kind == "regression":
        return ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        return values >= 0  # NaN >= 0 is False too


def _missing_value(values):
    return MISSING_LABEL if np.issubdtype(values.dtype, np.integer) else np.nan


def _read_split(dataset):
    """`(labels, weights)` of every row: `{task: array}` each, weights maybe {}."""
    targets = dataset.map(lambda inputs, *rest: tuple(rest))
    spec = targets.element_spec
    batches = list(targets.batch(4096).as_numpy_iterator())

    def stack(index, spec_dict):
        if not batches:
            return {
                name: np.zeros((0, *s.shape), s.dtype.as_numpy_dtype)
                for name, s in spec_dict.items()
            }
        return {
            name: np.concatenate([batch[index][name] for batch in batches])
            for name in spec_dict
        }

    labels = stack(0, spec[0])
    weights = stack(1, spec[1]) if len(spec) > 1 else {}
    return labels, weights


def _hide(values, present, task, fraction, seed, split):
    """`values` with all but `round(fraction * labelled)` labelled rows hidden."""
    rows = np.flatnonzero(present)
    keep = max(1, int(round(fraction * len(rows)))) if len(rows) else 0
    rng = np.random.default_rng(
        [seed, zlib.crc32(task.name.encode()), SPLITS.index(split)]
    )
    hidden = rng.permutation(rows)[keep:]
    values = values.copy()
    values[hidden] = _missing_value(values)
    return values


def _class_index(task, key, names):
    """The class index a `class_weight` table key names (a name or an index)."""
    count = task.num_classes if task.kind == "multiclass" else 2
    if names and key in names:
        return list(names).index(key)
    if key.isdigit() and int(key) < count:
        return int(key)
    known = list(names) if names else [str(i) for i in range(count)]
    raise ValueError(
        f"class_weight: {key!r} is not a class of task {task.name!r}. Expected "
        f"one of {known} (or a class index). Received: {key!r}"
    )


def class_weights(task, train_labels, names):
    """One weight per class of `task`, or None without `class_weight`.

    `"balanced"` weighs class c by `n / (k * n_c)` over the training split's
    labelled rows (`k` classes occur, class c on `n_c` rows), so the mean
    weight of a labelled row is 1; a class that never occurs weighs 1. A
    table maps class names (or indices) to weights; other classes weigh 1.
    """
    if not task.class_weight:
        return None
    count = task.num_classes if task.kind == "multiclass" else 2
    weights = np.ones(count, np.float64)
    if task.class_weight == "balanced":
        present = is_labelled(train_labels, task.kind)
        classes = np.asarray(train_labels).reshape(-1)[present].astype(np.int64)
        counts = np.bincount(classes, minlength=count)
        occurring = counts > 0
        weights[occurring] = len(classes) / (occurring.sum() * counts[occurring])
        return weights
    for key, weight in task.class_weight.items():
        weights[_class_index(task, str(key), names)] = weight
    return weights


def _row_weights(task, labels, class_weight, column_weight):
    weights = np.ones(len(labels), np.float32)
    if class_weight is not None:
        present = is_labelled(labels, task.kind)
        classes = np.asarray(labels).reshape(-1)[present].astype(np.int64)
        weights[present] = class_weight[classes]
    if column_weight is not None:
        weights *= column_weight.astype(np.float32)
    return weights


def _monitored_tasks(config):
    """The tasks whose validation labels `train.monitor` reads."""
    monitor = config.train.monitor
    if monitor == "val_loss":
        return list(config.tasks)
    rest = monitor.removeprefix("val_")
    if rest == monitor:
        return []
    matching = [task for task in config.tasks if rest.startswith(task.name + "_")]
    return sorted(matching, key=lambda task: len(task.name))[-1:]


def _check_counts(config, labelled, rows):
    described = {
        split: ", ".join(f"{name}: {n}" for name, n in counts.items())
        for split, counts in labelled.items()
    }
    for task in config.tasks:
        if labelled["train"][task.name] == 0:
            raise ValueError(
                f"Task {task.name!r} has no labelled row in the training split "
                f"({rows['train']} rows; labelled per task: {described['train']}). "
                f"Check its label column, tasks.*.missing_label and "
                f"data.label_fraction."
            )
    if rows.get("validation"):
        for task in _monitored_tasks(config):
            if labelled["validation"][task.name] == 0:
                raise ValueError(
                    f"Task {task.name!r} has no labelled row in the validation "
                    f"split ({rows['validation']} rows; labelled per task: "
                    f"{described['validation']}), and train.monitor="
                    f"{config.train.monitor!r} needs it. Raise "
                    f"data.validation_fraction, take 'validation' out of "
                    f"data.label_fraction_splits, or monitor another metric."
                )


def _rebuild(dataset, keep, labels, weights):
    """`dataset`'s rows where `keep`, their inputs with `labels` (and `weights`).

    `labels` and `weights` hold the kept rows only, in the source's order
    (every source reads its splits in a fixed order).
    """
    if not keep.all():
        flags = tf.data.Dataset.from_tensor_slices(keep)
        dataset = (
            tf.data.Dataset.zip(dataset, flags)
            .filter(lambda element, kept: kept)
            .map(lambda element, kept: element)
        )
    targets = (labels, weights) if weights else (labels,)
    return tf.data.Dataset.zip(
        dataset, tf.data.Dataset.from_tensor_slices(targets)
    ).map(
        lambda element, new: (element[0], *new),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def _split_labels(config, split, dataset):
    """One split's `(labels, column_weights, keep, changed)` after the stage.

    `keep` marks the rows that stay; `changed` whether any label was hidden.
    """
    data = config.data
    labels, column_weights = _read_split(dataset)
    present = {t.name: is_labelled(labels[t.name], t.kind) for t in config.tasks}
    combine = np.logical_and if data.missing_labels == "drop" else np.logical_or
    keep = combine.reduce(list(present.values()))
    if not keep.all():
        reason = "missing a label" if data.missing_labels == "drop" else "no label"
        logger.info(
            "%s split: dropped %d of %d rows (%s)",
            split,
            (~keep).sum(),
            len(keep),
            reason,
        )
    changed = False
    for task in config.tasks:
        fraction = data.label_fraction.get(task.name, 1.0)
        if fraction < 1.0 and split in data.label_fraction_splits:
            labels[task.name][keep] = _hide(
                labels[task.name][keep],
                present[task.name][keep],
                task,
                fraction,
                data.seed,
                split,
            )
            changed = True
    return labels, column_weights, keep, changed


def apply_labels(config, splits, sizes, class_names):
    """The label stage of `load_datasets` (see the module docstring).

    Args:
        config: A `keras_mtl.Config`.
        splits: Split name -> unbatched dataset of `(inputs, labels)`, or of
            `(inputs, labels, weights)` where the source has per-row weights
            for some tasks.
        sizes: Split name -> example count, or None where unknown.
        class_names: Task name -> class names (None for regression).

    Returns:
        `(splits, sizes, labelled, scales)`: the datasets with the stage
        applied, the sizes after dropped rows, `{split: {task: count}}` of
        labelled rows, and a `TargetScale` per normalised regression task.
    """
    weighted = any(t.class_weight or t.sample_weight_column for t in config.tasks)
    result, sizes, labelled, rows, train_labels = {}, dict(sizes), {}, {}, {}
    for split in SPLITS:
        labels, column_weights, keep, changed = _split_labels(
            config, split, splits[split]
        )
        labels = {name: value[keep] for name, value in labels.items()}
        column_weights = {name: value[keep] for name, value in column_weights.items()}
        rows[split] = int(keep.sum())
        if sizes[split] is not None:
            sizes[split] = rows[split]
        labelled[split] = {
            t.name: int(is_labelled(labels[t.name], t.kind).sum()) for t in config.tasks
        }
        for name, count in labelled[split].items():
            logger.info(
                "%s: %d of %d %s rows labelled (%.1f%%)",
                name,
                count,
                rows[split],
                split,
                100.0 * count / max(rows[split], 1),
            )
        weights = {}
        if split == "train":
            train_labels = labels
            _check_counts(config, labelled, rows)
            if weighted:
                weights = {
                    t.name: _row_weights(
                        t,
                        labels[t.name],
                        class_weights(t, labels[t.name], class_names.get(t.name)),
                        column_weights.get(t.name),
                    )
                    for t in config.tasks
                }
        result[split] = splits[split]
        if changed or weights or column_weights or not keep.all():
            result[split] = _rebuild(splits[split], keep, labels, weights)
    _check_counts(config, labelled, rows)
    return result, sizes, labelled, _target_scales(config, train_labels)


def _target_scales(config, train_labels):
    """A `TargetScale` per normalised regression task, from its labelled rows."""
    scales = []
    for task in config.tasks:
        if task.kind == "regression" and task.normalize:
            values = train_labels[task.name].reshape(-1).astype(np.float64)
            values = values[~np.isnan(values)]
            std = float(values.std())
            scales.append(TargetScale(task.name, float(values.mean()), std or 1.0))
    return tuple(scales)
