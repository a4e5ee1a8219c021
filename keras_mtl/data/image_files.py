"""Images from files: a CSV of image paths and labels (`data.source = "images"`).

The CSV (`data.path`) has one column of image paths (`data.image_column`,
relative to `data.image_dir`, by default the CSV's folder) and one column per
task's label. Labels, missing labels, sample weights, class names and the
train / validation / test split are the CSV source's
(`keras_mtl.data.csv_source`); the other columns are ignored.

Every image is checked before training: a missing file, or one that does not
decode (JPEG, PNG; BMP and GIF decode too), stops the load with one line that
names the file and its CSV line, or with `data.skip_bad_images = true` its
row is dropped and the skipped rows are counted in the log.

The splits hold paths; `decode_files` turns them into pixels inside tf.data
(read, decode to 3 channels, resize to `data.image_size`, as float32 in
[0, 255]), with parallel calls. The pipeline applies it after the label stage
and the shuffle of paths, so neither of them decodes an image
(`keras_mtl.data.pipeline`). An export with `export.image_input = "bytes"`
decodes request bytes with the same `decode_image`, so served predictions
equal those on the training pipeline's pixels.
"""

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mtl.config import resolve_path
from keras_mtl.data import csv_source
from keras_mtl.data.features import ImageFeature

logger = logging.getLogger(__name__)

CHANNELS = 3


def decode_image(contents, size):
    """Encoded JPEG/PNG bytes (a scalar string tensor) -> float32 pixels of
    shape `(height, width, 3)` in [0, 255], resized bilinearly to `size`."""
    image = tf.io.decode_image(contents, channels=CHANNELS, expand_animations=False)
    image = tf.image.resize(image, size)
    return tf.ensure_shape(image, (*size, CHANNELS))


def decode_files(feature, size):
    """A tf.data map function: `({feature: path}, *rest)` -> `({feature:
    pixels}, *rest)`, each file read and decoded with `decode_image`."""

    def decode(inputs, *rest):
        pixels = decode_image(tf.io.read_file(inputs[feature]), size)
        return ({**inputs, feature: pixels}, *rest)

    return decode


def _image_paths(values, image_dir):
    return np.array([str(image_dir / value) for value in values], dtype=object)


def _readable(paths):
    """One bool per path: the file exists and decodes as an image.

    Decoding runs in a parallel tf.data pass; a file that fails is left out
    of its output by `ignore_errors`, which is how it is found.
    """
    exists = np.array([Path(path).is_file() for path in paths])
    candidates = np.flatnonzero(exists)
    dataset = (
        tf.data.Dataset.from_tensor_slices((candidates, paths[candidates].astype(str)))
        .map(
            lambda index, path: (
                index,
                tf.shape(
                    tf.io.decode_image(
                        tf.io.read_file(path), CHANNELS, expand_animations=False
                    )
                )[0],
            ),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .ignore_errors()
        .map(lambda index, height: index)
        .batch(4096)
    )
    decoded = np.zeros(len(paths), bool)
    for batch in dataset.as_numpy_iterator():
        decoded[batch] = True
    return decoded, exists


def _check_images(paths, lines, data, csv_path):
    """The rows to keep; raises `ValueError` at the first bad image unless
    `data.skip_bad_images`."""
    good, exists = _readable(paths)
    bad = np.flatnonzero(~good)
    if not len(bad):
        return good
    first = bad[0]
    problem = "does not exist" if not exists[first] else "is not a readable image"
    where = (
        f"{csv_path}, line {lines[first]}: image file {paths[first]} {problem} "
        f"(column {data.image_column!r})"
    )
    if not data.skip_bad_images:
        raise ValueError(
            f"{where}. Expected a JPEG or PNG file; fix or remove the row, or set "
            "data.skip_bad_images=true to skip such rows."
        )
    logger.warning(
        "%s: skipped %d of %d rows whose image is missing (%d) or unreadable (%d); "
        "first: %s",
        csv_path,
        len(bad),
        len(paths),
        int((~exists).sum()),
        int((exists & ~good).sum()),
        where,
    )
    return good


def load_images(config):
    """Reads the CSV `config.data.path` into unbatched datasets of image paths.

    Returns:
        `(splits, features, class_names, sizes)` as `load_csv` does; the
        splits' inputs are `{data.feature: path}` until `decode_files` maps
        them to pixels.
    """
    data = config.data
    path = resolve_path(data.path)
    if not path.is_file():
        raise ValueError(
            f"CSV file not found: data.path={data.path!r} (resolved to {path}). "
            "Point data.path at a CSV with a column of image paths "
            f"(data.image_column={data.image_column!r}) and one column per label."
        )
    header, rows, lines = csv_source.read_rows(path, data.columns)
    if data.image_column not in header:
        raise ValueError(
            f"data.image_column: column {data.image_column!r} is not in {path}. "
            f"Columns: {header}"
        )
    weight_columns = {
        task.name: task.sample_weight_column
        for task in config.tasks
        if task.sample_weight_column
    }
    csv_source.check_columns(config, header, weight_columns, path)
    labels, class_names, weights, keep = csv_source.labels_and_weights(
        config, header, rows, lines, weight_columns, path
    )
    image_dir = resolve_path(data.image_dir) if data.image_dir else path.parent
    paths = _image_paths(rows[keep, header.index(data.image_column)], image_dir)
    good = _check_images(paths, lines[keep], data, path)
    paths = paths[good]
    labels = {name: value[keep][good] for name, value in labels.items()}
    weights = {name: value[keep][good] for name, value in weights.items()}

    splits = csv_source.split_indices(len(paths), config)
    datasets = {}
    for split, index in splits.items():
        element = (
            {data.feature: paths[index].astype(str)},
            {name: value[index] for name, value in labels.items()},
        )
        if weights:
            element += ({name: value[index] for name, value in weights.items()},)
        datasets[split] = tf.data.Dataset.from_tensor_slices(element)
    sizes = {split: len(index) for split, index in splits.items()}
    feature = ImageFeature(
        data.feature, (*data.image_size, CHANNELS), tuple(data.augment)
    )
    return datasets, (feature,), class_names, sizes
