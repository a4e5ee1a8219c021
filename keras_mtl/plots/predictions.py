"""A grid of example images, each with both heads' answers under it.

Example:

```python
inputs, labels = next(iter(datasets.test))
predictions = model.predict(inputs, verbose=0)
keras_mtl.plots.plot_predictions(
    inputs["image"][:12], predictions, datasets.class_names, "predictions",
    labels=labels,
)
```
"""

import math

import numpy as np

from keras_mtl.plots.figures import (
    BOTH_COLOR,
    RIGHT_COLOR,
    WRONG_COLOR,
    new_figure,
    save_figure,
)


def _as_columns(predictions, count, names):
    """`{task: array}` from columns or from TF Serving rows (a list of dicts),
    checked to hold a prediction of every task in `names` for `count` images."""
    if isinstance(predictions, list):
        if not all(isinstance(row, dict) for row in predictions):
            raise ValueError(
                "Expected predictions as {task: array} or as TF Serving rows "
                "[{task: values}, ...]. Received a list of "
                f"{sorted({type(row).__name__ for row in predictions})}"
            )
        predictions = {
            name: [row[name] for row in predictions] for name in predictions[0]
        }
    columns = {name: np.asarray(value) for name, value in predictions.items()}
    for name, value in columns.items():
        if len(value) < count:
            raise ValueError(
                f"Expected a prediction for each of the {count} images; "
                f"{name!r} has {len(value)}. Received: predictions[{name!r}].shape="
                f"{value.shape}"
            )
    for name in names:
        if name not in columns:
            raise ValueError(
                f"No predictions for task {name!r}. Received: predictions for "
                f"{sorted(columns)}"
            )
    return columns


def _as_image(image):
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = image.astype("float32")
        if image.max(initial=0.0) > 1.0:
            image = image / 255.0
        image = np.clip(image, 0.0, 1.0)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return image


def describe_prediction(prediction, class_names=None):
    """`(answer, confidence)` of one head for one example.

    Args:
        prediction: The head's output for the example: class probabilities
            (multiclass), one probability (binary) or a value (regression).
        class_names: The task's class names, or None.

    Returns:
        The class name (or index, or the value as text) and its probability
        (None for a regression).
    """
    values = np.ravel(np.asarray(prediction, dtype="float64"))
    if class_names is None and values.size == 1:  # A regression.
        return f"{values[0]:.3g}", None
    if values.size == 1:  # A binary task: the probability of the positive class.
        index = int(values[0] >= 0.5)
        confidence = values[0] if index else 1.0 - values[0]
    else:
        index = int(np.argmax(values))
        confidence = values[index]
    name = class_names[index] if class_names else str(index)
    return name, float(confidence)


def _true_name(label, class_names):
    value = np.ravel(np.asarray(label))[0]
    if class_names is None:
        return f"{float(value):.3g}"
    return class_names[int(value)]


def _answer_line(name, prediction, labels, index, class_names):
    """`(text, color)` of task `name`'s answer for example `index`: green when
    right, red with the true class when wrong, black without labels."""
    names_of_task = (class_names or {}).get(name)
    answer, confidence = describe_prediction(prediction, names_of_task)
    text = f"{name}: {answer}"
    if confidence is not None:
        text += f" {confidence:.0%}"
    color = BOTH_COLOR
    if name in labels:
        truth = _true_name(labels[name][index], names_of_task)
        right = truth == answer
        color = RIGHT_COLOR if right else WRONG_COLOR
        if not right:
            text += f" ({truth})"
    return text, color


def _draw_example(ax, image, lines):
    """One image with its lines of `(text, color)` under it."""
    ax.imshow(_as_image(image), cmap="gray", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for line, (text, color) in enumerate(lines):
        ax.text(
            0.5,
            -0.06 - 0.13 * line,
            text,
            transform=ax.transAxes,
            ha="center",
            va="top",
            fontsize=8.5,
            color=color,
        )


# Over 60 lines only through its docstring and 11 keyword arguments; the body
# is 25 lines of named drawing steps.
def plot_predictions(
    images,
    predictions,
    class_names,
    path,
    *,
    labels=None,
    tasks=None,
    columns=6,
    title=None,
):
    """Draws example images with each head's answer and confidence under them.

    Under every image, one line per head in head order: the predicted class
    and its probability, green when it matches the label and red (with the
    true class) when it does not; black without labels.

    Args:
        images: `(N, height, width, channels)` or `(N, height, width)`, uint8
            or floats (0-255 or 0-1).
        predictions: `{task: array}` with one row per image (`model.predict`,
            `keras_mtl.LoadedModel.predict`), or TF Serving's row answer
            (`[{task: values}, ...]`, as `Client.predict` returns it).
        class_names: `{task: [names]}` (`Datasets.class_names`, or the
            `class_names` of an export's metadata); None for a regression.
        path: Where to write; `.png` and `.svg` are added to the stem.
        labels: `{task: array}` of true labels, to mark right and wrong.
        tasks: The tasks in head order (names or `TaskConfig`s); default the
            order of `class_names`.
        columns: Images per row.
        title: The figure's title.

    Returns:
        The `[png, svg]` paths written.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4) or not len(images):
        raise ValueError(
            "Expected a batch of images shaped (N, height, width[, channels]). "
            f"Received: images.shape={images.shape}"
        )
    count = len(images)
    names = [getattr(task, "name", task) for task in (tasks or class_names)]
    predictions = _as_columns(predictions, count, names)
    labels = {name: np.asarray(value) for name, value in (labels or {}).items()}
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    figure = new_figure(figsize=(2.3 * columns, 2.75 * rows + 0.8))
    for index in range(count):
        ax = figure.add_subplot(rows, columns, index + 1)
        lines = [
            _answer_line(name, predictions[name][index], labels, index, class_names)
            for name in names
        ]
        _draw_example(ax, images[index], lines)
    caption = "Under each image: each head's answer and its probability"
    if labels:
        caption += "; green: right, red: wrong (true class in brackets)"
    figure.suptitle(f"{title or 'Predictions of both heads'}\n{caption}", fontsize=11)
    figure.tight_layout(h_pad=2.2)
    return save_figure(figure, path)
