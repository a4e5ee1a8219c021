"""Tabular data from one CSV file: raw columns in, two labels out.

Reads files as real ones are: a header line (or `data.columns` for files
without one), spaces after commas, missing values such as `?`, numeric and
string columns side by side. Columns are numeric when every present value
parses as a number, categorical otherwise (or when listed in
`data.categorical_columns`). The label columns and `data.exclude_columns` never
become inputs. Statistics and vocabularies come from the training split only.
"""

import collections
import csv
import logging

import numpy as np
import tensorflow as tf

from keras_mtl.config import resolve_path
from keras_mtl.data.features import CategoricalFeature, NumericFeature

logger = logging.getLogger(__name__)


def _read_rows(path, columns):
    with open(path, newline="") as file:
        reader = csv.reader(file, skipinitialspace=True)
        header = [name.strip() for name in columns] or [
            name.strip() for name in next(reader, [])
        ]
        if not header:
            raise ValueError(f"{path}: the file is empty; expected a header line.")
        rows = []
        for line_number, row in enumerate(reader, start=1 if columns else 2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}, line {line_number}: expected {len(header)} fields "
                    f"({', '.join(header)}), found {len(row)}."
                )
            rows.append([value.strip() for value in row])
    if not rows:
        raise ValueError(f"{path}: no data rows after the header.")
    return header, np.array(rows, dtype=object)


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _encode_labels(task, values, missing, path):
    present = np.array([value not in missing for value in values])
    if task.kind == "regression":
        bad = [v for v in values[present] if not _is_number(v)]
        if bad:
            raise ValueError(
                f"{path}: column {task.label_key!r} of regression task {task.name!r} "
                f"must be numeric. Received: {bad[0]!r}"
            )
        labels = np.full(len(values), np.nan, np.float32)
        labels[present] = values[present].astype(np.float32)
        return labels.reshape(-1, 1), present, None
    distinct = sorted(set(values[present]))
    if all(_is_number(v) for v in distinct):
        distinct = sorted(distinct, key=float)
    if task.kind == "binary":
        positive = task.positive
        if not positive:
            if {float(v) for v in distinct if _is_number(v)} == {0.0, 1.0}:
                positive = next(v for v in distinct if float(v) == 1.0)
            else:
                raise ValueError(
                    f"Task {task.name!r}: set `positive` to the value of column "
                    f"{task.label_key!r} that means 1. Values found in {path}: "
                    f"{distinct[:10]}"
                )
        if positive not in distinct:
            raise ValueError(
                f"Task {task.name!r}: positive={positive!r} does not occur in column "
                f"{task.label_key!r} of {path}. Values found: {distinct[:10]}"
            )
        others = [v for v in distinct if v != positive]
        negative = others[0] if len(others) == 1 else "not " + positive
        labels = (values == positive).astype(np.float32).reshape(-1, 1)
        return labels, present, [negative, positive]
    if len(distinct) != task.num_classes:
        raise ValueError(
            f"Task {task.name!r}: num_classes={task.num_classes} but column "
            f"{task.label_key!r} of {path} has {len(distinct)} classes: "
            f"{distinct[:20]}. Set tasks.{task.name}.num_classes={len(distinct)}."
        )
    index = {name: i for i, name in enumerate(distinct)}
    labels = np.array([index.get(v, -1) for v in values], np.int32)
    return labels, present, distinct


def _split_indices(count, config):
    rng = np.random.default_rng(config.data.seed)
    order = rng.permutation(count)
    n_test = int(round(count * config.data.test_fraction))
    n_val = int(round(count * config.data.validation_fraction))
    test, val, train = (
        order[:n_test],
        order[n_test : n_test + n_val],
        order[n_test + n_val :],
    )
    if config.data.max_examples:
        train = train[: config.data.max_examples]
    return {"train": train, "validation": val, "test": test}


def load_csv(config):
    """Reads `config.data.path` into unbatched datasets and input specs.

    Returns:
        `(splits, features, class_names)`: a dict of unbatched `tf.data`
        datasets of `(inputs, labels)` for "train", "validation" and "test";
        the input specs; and each task's class names (None for regression).
    """
    data = config.data
    path = resolve_path(data.path)
    if not path.is_file():
        raise ValueError(
            f"CSV file not found: data.path={data.path!r} (resolved to {path}). "
            "Point data.path at your file, e.g. --set data.path=/data/adult.csv; "
            "the UCI Adult file is at "
            "https://archive.ics.uci.edu/dataset/2/adult (adult.data, no header: "
            "also set data.columns)."
        )
    header, rows = _read_rows(path, data.columns)
    missing = set(data.missing_values)
    label_keys = [task.label_key for task in config.tasks]
    named = {
        "tasks.label": label_keys,
        "data.exclude_columns": data.exclude_columns,
        "data.categorical_columns": data.categorical_columns,
    }
    for key, names in named.items():
        unknown = [name for name in names if name not in header]
        if unknown:
            raise ValueError(
                f"{key}: column {unknown[0]!r} is not in {path}. Columns: {header}"
            )

    keep = np.ones(len(rows), bool)
    labels, class_names = {}, {}
    for task in config.tasks:
        values = rows[:, header.index(task.label_key)]
        labels[task.name], present, class_names[task.name] = _encode_labels(
            task, values, missing, path
        )
        keep &= present
    if not keep.all():
        logger.info("%s: dropped %d rows with a missing label", path, (~keep).sum())
    rows = rows[keep]
    labels = {name: value[keep] for name, value in labels.items()}

    splits = _split_indices(len(rows), config)
    train_rows = rows[splits["train"]]
    inputs, features = {}, []
    for column, name in enumerate(header):
        if name in label_keys or name in data.exclude_columns:
            continue
        values = rows[:, column]
        present = np.array([v not in missing for v in values])
        categorical = name in data.categorical_columns or not all(
            _is_number(v) for v in values[present]
        )
        train_values = train_rows[:, column]
        train_present = np.array([v not in missing for v in train_values])
        if categorical:
            counts = collections.Counter(train_values[train_present])
            vocabulary = tuple(sorted(counts, key=lambda v: (-counts[v], v)))
            features.append(
                CategoricalFeature(name, vocabulary, tuple(data.missing_values))
            )
            inputs[name] = values.astype(str)
        else:
            numbers = np.full(len(values), np.nan, np.float32)
            numbers[present] = values[present].astype(np.float32)
            train_numbers = numbers[splits["train"]]
            mean = float(np.nanmean(train_numbers)) if train_present.any() else 0.0
            variance = float(np.nanvar(train_numbers)) if train_present.any() else 1.0
            features.append(NumericFeature(name, mean, variance))
            inputs[name] = numbers
    datasets = {
        split: tf.data.Dataset.from_tensor_slices(
            (
                {name: value[index] for name, value in inputs.items()},
                {name: value[index] for name, value in labels.items()},
            )
        )
        for split, index in splits.items()
    }
    sizes = {split: len(index) for split, index in splits.items()}
    return datasets, tuple(features), class_names, sizes
