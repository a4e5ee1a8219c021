"""The `shapes` images written out as PNG files plus a CSV of labels.

What `data.source = "images"` reads, made locally: for trying the source,
its tests and the input-pipeline benchmark.
"""

import csv
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mtl.data.shapes.render import COARSE_NAMES, FINE_NAMES, render


def write_image_files(directory, count, seed=0, image_format="png"):
    """Writes `count` shapes images and `labels.csv` into `directory`.

    Every fine class gets `count // 12` images (the first `count % 12`
    classes one more), so a CSV of 12 or more rows holds every class. The
    CSV's columns are `image` (a path relative to `directory`),
    `coarse_label` and `label` (class names), the `shapes` preset's label
    keys.

    Args:
        directory: Created if missing.
        count: Number of images.
        seed: The renderer's stream.
        image_format: "png" or "jpeg".

    Returns:
        The `Path` of the CSV file.

    Example:

    ```python
    path = write_image_files("/tmp/shapes_images", 240)
    config = keras_mtl.load_config(
        "shapes", ["data.source=images", f"data.path={path}", "data.image_size=[32, 32]"]
    )
    ```
    """
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    wanted = np.full(len(FINE_NAMES), count // len(FINE_NAMES))
    wanted[: count % len(FINE_NAMES)] += 1
    encode = tf.io.encode_png if image_format == "png" else tf.io.encode_jpeg
    suffix = "png" if image_format == "png" else "jpg"
    rows, index = [], 0
    while len(rows) < count:
        image, fine, coarse = render(index, seed)
        index += 1
        if not wanted[fine]:
            continue
        wanted[fine] -= 1
        name = f"images/{len(rows):06d}.{suffix}"
        (directory / name).write_bytes(encode(image).numpy())
        rows.append((name, COARSE_NAMES[coarse], FINE_NAMES[fine]))
    path = directory / "labels.csv"
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(("image", "coarse_label", "label"))
        writer.writerows(rows)
    return path
