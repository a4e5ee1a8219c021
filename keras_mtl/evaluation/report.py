"""Per-task evaluation of a Keras model or an exported SavedModel.

Both go through one loop: predict a batch, update each task's loss and
metrics. A SavedModel is evaluated from what it carries (its config names the
data), so `keras-mtl evaluate --model saved_models/shapes/1` needs nothing
else.
"""

import dataclasses

import keras
import tensorflow as tf

from keras_mtl import tasks as task_lib


def evaluate_predictions(predict, dataset, tasks, scales=None, labelled=None):
    """Each task's mean loss and metrics over the rows of `dataset` that carry
    the task's label.

    Args:
        predict: A function from a batch of inputs to a dict of predictions
            keyed by task name.
        dataset: Batches of `(inputs, {task: label})`; a missing label is
            `keras_mtl.tasks.MISSING_LABEL` or NaN.
        tasks: The `TaskConfig`s.
        scales: Task name -> standard deviation of the regression targets
            whose loss is standardised (as in training).
        labelled: A dict to fill with task name -> number of labelled rows.

    Returns:
        `{task: {"loss": ..., <metric>: ...}}` with Python floats. Losses are
        unweighted means over the labelled rows;
        `keras_mtl.tasks.metric_direction` tells which way each metric
        improves.
    """
    scales = scales or {}
    losses = {
        task.name: task_lib.make_loss(task, scales.get(task.name, 1.0))
        for task in tasks
    }
    trackers = {
        task.name: [keras.metrics.Mean(name="loss"), *task_lib.make_metrics(task)]
        for task in tasks
    }
    counts = dict.fromkeys(losses, 0)
    for inputs, labels, *_ in dataset:
        predictions = predict(inputs)
        for task in tasks:
            y_true, y_pred = labels[task.name], predictions[task.name]
            count = tf.reduce_sum(
                tf.cast(task_lib.labelled(y_true, task.kind), "int32")
            )
            counts[task.name] += int(count)
            loss_tracker, *metrics = trackers[task.name]
            loss_tracker.update_state(
                losses[task.name](y_true, y_pred), sample_weight=count
            )
            for metric in metrics:
                metric.update_state(y_true, y_pred)
    if labelled is not None:
        labelled.update(counts)
    return {
        name: {metric.name: float(metric.result()) for metric in metrics}
        for name, metrics in trackers.items()
    }


def _model_scales(model):
    """Task name -> the scale of the standardised losses `model` was compiled
    with (none for an uncompiled model)."""
    losses = getattr(model, "loss", None)
    if not isinstance(losses, dict):
        return {}
    return {name: getattr(loss, "scale", 1.0) for name, loss in losses.items()}


def evaluate(model, dataset, config, labelled=None):
    """Each task's loss and metrics for a Keras model on a batched dataset.

    Args:
        model: The trained Keras model.
        dataset: Batches of `(inputs, {task: label})`, e.g. `Datasets.test`.
        config: The run's `Config` (for its tasks).
        labelled: A dict to fill with task name -> number of labelled rows.

    Returns:
        `{task: {"loss": ..., <metric>: ...}}`.

    Example:

    ```python
    metrics = evaluate(model, datasets.test, config)
    metrics["fine"]["accuracy"]
    ```
    """
    predict = tf.function(
        lambda inputs: model(inputs, training=False), reduce_retracing=True
    )
    return evaluate_predictions(
        predict, dataset, config.tasks, _model_scales(model), labelled
    )


@dataclasses.dataclass
class EvaluationReport:
    """Each task's validation and test metrics, and which way each improves.

    Attributes:
        validation: `{task: {"loss": ..., <metric>: ...}}` on the validation
            split, or None when it is empty.
        test: The same on the test split.
        tasks: The `TaskConfig`s, in head order.
        labelled: `{split: {task: rows}}`: how many rows of each split carry
            each task's label (the metrics are over those rows only).
    """

    validation: dict | None
    test: dict
    tasks: list
    labelled: dict = dataclasses.field(default_factory=dict)

    @property
    def headline(self):
        """`{task: metric}`: the metric that summarises each task (and delta-m's)."""
        return {task.name: task_lib.headline_metric(task) for task in self.tasks}

    @property
    def directions(self):
        """`{task: {metric: "higher" | "lower"}}`: which way each metric improves."""
        return {
            name: {metric: task_lib.metric_direction(metric) for metric in metrics}
            for name, metrics in self.test.items()
        }

    def delta_m(self, baselines, split="test"):
        """Delta-m in percent against `baselines` (a `Baselines` or metrics dict)."""
        from keras_mtl.evaluation.delta_m import delta_m

        reference = (
            baselines.metrics(split) if hasattr(baselines, "metrics") else baselines
        )
        return delta_m(getattr(self, split), reference, self.tasks)

    def to_dict(self):
        """A JSON-ready dict: per task, its headline metric, directions and splits."""
        return {
            task.name: {
                "headline": self.headline[task.name],
                "directions": self.directions[task.name],
                "validation": (self.validation or {}).get(task.name),
                "test": self.test[task.name],
                "labelled": {
                    split: counts[task.name] for split, counts in self.labelled.items()
                },
            }
            for task in self.tasks
        }

    def to_markdown(self):
        """A table: one row per task and metric, validation and test columns."""
        lines = [
            "| task | metric | better | validation | test |",
            "|---|---|---|---|---|",
        ]
        for task in self.tasks:
            for metric, direction in self.directions[task.name].items():
                validation = (self.validation or {}).get(task.name, {}).get(metric)
                shown = "" if validation is None else f"{validation:.4f}"
                lines.append(
                    f"| {task.name} | {metric} | {direction} | {shown} | "
                    f"{self.test[task.name][metric]:.4f} |"
                )
        return "\n".join(lines) + "\n"


def evaluation_report(model, datasets, config):
    """Each task's validation and test metrics, with their directions.

    Args:
        model: A Keras model with one output per task of `config`.
        datasets: The run's `Datasets`.
        config: The run's `Config`.

    Returns:
        An `EvaluationReport`.

    Example:

    ```python
    report = keras_mtl.evaluation_report(model, datasets, config)
    report.test["fine"]["accuracy"], report.directions["fine"]["accuracy"]
    print(report.to_markdown())
    ```
    """
    validation, labelled = None, {"validation": {}, "test": {}}
    if datasets.validation is not None:
        validation = evaluate(
            model, datasets.validation, config, labelled["validation"]
        )
    test = evaluate(model, datasets.test, config, labelled["test"])
    return EvaluationReport(
        validation=validation,
        test=test,
        tasks=list(config.tasks),
        labelled={split: counts for split, counts in labelled.items() if counts},
    )


def evaluate_saved_model(path, split="test", overrides=()):
    """Evaluates an exported SavedModel on a split of the data it was trained on.

    Args:
        path: A version directory or a model directory (latest version).
        split: `"test"` or `"validation"`.
        overrides: `section.key=value` changes to the recorded config, such
            as `data.path=...` when the data moved.

    Returns:
        `{task: {"loss": ..., <metric>: ...}}`.
    """
    from keras_mtl.config import config_from_dict
    from keras_mtl.data import load_datasets
    from keras_mtl.data.features import normalized_targets
    from keras_mtl.saved_model import LoadedModel

    loaded = LoadedModel(path)
    if "config" not in loaded.metadata:
        raise ValueError(
            f"{loaded.path} has no keras-mtl metadata (assets.extra/keras_mtl.json); "
            "it was not exported by keras-mtl, so its data is unknown."
        )
    config = config_from_dict(loaded.metadata["config"], str(loaded.path), overrides)
    datasets = load_datasets(config)
    dataset = {"test": datasets.test, "validation": datasets.validation}[split]
    if dataset is None:
        raise ValueError(f"The {split!r} split is empty for {loaded.path}.")
    scales = normalized_targets(config, datasets.features)
    return evaluate_predictions(
        lambda inputs: loaded.feature_signature(**inputs),
        dataset,
        config.tasks,
        {name: scale.std for name, scale in scales.items()},
    )
