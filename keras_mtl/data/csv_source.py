"""Tabular data from one CSV file: raw columns in, two labels out.

Reads files as real ones are: a header line (or `data.columns` for files
without one), spaces after commas, missing values such as `?`, numeric and
string columns side by side. Columns are numeric when every present value
parses as a number, categorical otherwise (or when listed in
`data.categorical_columns`). The label columns, `tasks.*.sample_weight_column`
and `data.exclude_columns` never become inputs. Statistics and vocabularies
come from the training split only.

A label that is a missing value is `MISSING_LABEL` in a multiclass label and
NaN in a binary or regression one. With `data.missing_labels = "mask"` a row
is kept when at least one task has its label; with `"drop"`, only when every
task has. Rows are dropped before the split into train / validation / test.
"""

import collections
import csv
import logging

import numpy as np
import tensorflow as tf

from keras_mtl.config import resolve_path
from keras_mtl.data.features import CategoricalFeature, NumericFeature
from keras_mtl.tasks import MISSING_LABEL

logger = logging.getLogger(__name__)


def _first_non_utf8_byte(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start
    return 0


def read_rows(path, columns):
    try:
        return _parse_rows(path, columns)
    except UnicodeDecodeError:
        # The reader's position is within a chunk: find the file's.
        data = path.read_bytes()
        start = _first_non_utf8_byte(data)
        line = data[:start].count(b"\n") + 1
        raise ValueError(
            f"{path}, line {line}: a CSV file must be "
            f"UTF-8 text, but this line holds byte 0x{data[start]:02x}. Save it as "
            "UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None


def _parse_rows(path, columns):
    # A byte-order mark (Excel's "CSV UTF-8") is not part of the first name;
    # newline="" lets the csv module read \r\n, \r and \n line ends alike.
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file, skipinitialspace=True)
        header = [name.strip() for name in columns] or [
            name.strip() for name in next(reader, [])
        ]
        if not header:
            raise ValueError(f"{path}: the file is empty; expected a header line.")
        rows, lines = [], []
        for line_number, row in enumerate(reader, start=1 if columns else 2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{path}, line {line_number}: expected {len(header)} fields "
                    f"({', '.join(header)}), found {len(row)}."
                )
            rows.append([value.strip() for value in row])
            lines.append(line_number)
    if not rows:
        raise ValueError(f"{path}: no data rows after the header.")
    return header, np.array(rows, dtype=object), np.array(lines)


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
        labels = (values == positive).astype(np.float32)
        labels[~present] = np.nan
        return labels.reshape(-1, 1), present, [negative, positive]
    if len(distinct) != task.num_classes:
        raise ValueError(
            f"Task {task.name!r}: num_classes={task.num_classes} but column "
            f"{task.label_key!r} of {path} has {len(distinct)} classes: "
            f"{distinct[:20]}. Set tasks.{task.name}.num_classes={len(distinct)}."
        )
    index = {name: i for i, name in enumerate(distinct)}
    labels = np.array([index.get(v, MISSING_LABEL) for v in values], np.int32)
    return labels, present, distinct


def _column_weights(values, labelled, lines, column, path):
    """A `sample_weight_column`'s values as per-row weights (1 where unused)."""
    weights = np.ones(len(values), np.float32)
    for row in np.flatnonzero(labelled):
        try:
            weight = float(values[row])
        except ValueError:
            weight = None
        if weight is None or not np.isfinite(weight) or weight < 0:
            raise ValueError(
                f"{path}, line {lines[row]}: column {column!r} holds sample "
                f"weights, which must be finite numbers >= 0. Received: "
                f"{values[row]!r}"
            )
        weights[row] = weight
    return weights


def split_indices(count, config):
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
        `(splits, features, class_names, sizes)`: a dict of unbatched
        `tf.data` datasets of `(inputs, labels)` for "train", "validation"
        and "test" (`(inputs, labels, {task: weight})` when some task has a
        `sample_weight_column`); the input specs; each task's class names
        (None for regression); and each split's row count.
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
    header, rows, lines = read_rows(path, data.columns)
    weight_columns = {
        task.name: task.sample_weight_column
        for task in config.tasks
        if task.sample_weight_column
    }
    check_columns(config, header, weight_columns, path)
    labels, class_names, weights, keep = labels_and_weights(
        config, header, rows, lines, weight_columns, path
    )
    rows = rows[keep]
    labels = {name: value[keep] for name, value in labels.items()}
    weights = {name: value[keep] for name, value in weights.items()}

    splits = split_indices(len(rows), config)
    not_inputs = {
        *(task.label_key for task in config.tasks),
        *weight_columns.values(),
        *data.exclude_columns,
    }
    inputs, features = {}, []
    for column, name in enumerate(header):
        if name not in not_inputs:
            inputs[name], feature = _encode_column(
                name, rows[:, column], splits["train"], data, path
            )
            features.append(feature)
    datasets = {}
    for split, index in splits.items():
        element = (
            {name: value[index] for name, value in inputs.items()},
            {name: value[index] for name, value in labels.items()},
        )
        if weights:
            element += ({name: value[index] for name, value in weights.items()},)
        datasets[split] = tf.data.Dataset.from_tensor_slices(element)
    sizes = {split: len(index) for split, index in splits.items()}
    return datasets, tuple(features), class_names, sizes


def check_columns(config, header, weight_columns, path):
    data = config.data
    named = {
        "tasks.label": [task.label_key for task in config.tasks],
        "tasks.sample_weight_column": list(weight_columns.values()),
        "data.exclude_columns": data.exclude_columns,
        "data.categorical_columns": data.categorical_columns,
    }
    for key, names in named.items():
        unknown = [name for name in names if name not in header]
        if unknown:
            raise ValueError(
                f"{key}: column {unknown[0]!r} is not in {path}. Columns: {header}"
            )


def labels_and_weights(config, header, rows, lines, weight_columns, path):
    """Each task's encoded labels, class names and row weights, and the rows
    to keep under `data.missing_labels` (dropped ones are counted in the log)."""
    missing = set(config.data.missing_values)
    labels, class_names, present = {}, {}, {}
    for task in config.tasks:
        values = rows[:, header.index(task.label_key)]
        labels[task.name], present[task.name], class_names[task.name] = _encode_labels(
            task, values, missing, path
        )
    weights = {
        name: _column_weights(
            rows[:, header.index(column)], present[name], lines, column, path
        )
        for name, column in weight_columns.items()
    }
    if config.data.missing_labels == "drop":
        keep = np.logical_and.reduce(list(present.values()))
        reason = "a missing label"
    else:
        keep = np.logical_or.reduce(list(present.values()))
        reason = "no label for any task"
    if not keep.all():
        logger.info("%s: dropped %d rows with %s", path, (~keep).sum(), reason)
    return labels, class_names, weights, keep


def _encode_column(name, values, train_index, data, path):
    """One input column as an array, and its spec from the training rows.

    A column is numeric when every present value parses as a number (unless
    `data.categorical_columns` names it). Non-finite numbers (`inf`, `nan`)
    count as missing, like the `data.missing_values` tokens: the model fills
    them with the training mean. Their count is logged.
    """
    missing = set(data.missing_values)
    present = np.array([v not in missing for v in values])
    categorical = name in data.categorical_columns or not all(
        _is_number(v) for v in values[present]
    )
    if categorical:
        train_values = values[train_index]
        train_values = train_values[[v not in missing for v in train_values]]
        counts = collections.Counter(train_values)
        vocabulary = tuple(sorted(counts, key=lambda v: (-counts[v], v)))
        return values.astype(str), CategoricalFeature(
            name, vocabulary, tuple(data.missing_values)
        )
    numbers = np.full(len(values), np.nan, np.float32)
    numbers[present] = values[present].astype(np.float32)
    non_finite = np.isinf(numbers) | (present & np.isnan(numbers))
    if non_finite.any():
        logger.warning(
            "%s: column %r has %d non-finite values (inf or nan); they count as "
            "missing and the model fills them with the training mean",
            path,
            name,
            int(non_finite.sum()),
        )
        numbers[non_finite] = np.nan
    train_numbers = numbers[train_index]
    if np.isnan(train_numbers).all():
        return numbers, NumericFeature(name, 0.0, 1.0)
    mean = float(np.nanmean(train_numbers))
    return numbers, NumericFeature(name, mean, float(np.nanvar(train_numbers)))
