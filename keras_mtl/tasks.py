"""Task kinds: what each head outputs, its loss and its metrics.

| kind | output | loss | metrics (first = the task's headline metric) |
|---|---|---|---|
| `multiclass` | `num_classes` softmax probabilities | sparse categorical cross-entropy | accuracy |
| `binary` | one sigmoid probability | binary cross-entropy | AUC, accuracy |
| `regression` | one linear value, in the target's units | mean squared error of the standardised target | MAE, RMSE |
"""

import keras
from keras import ops

# A missing label in a batch: -1 for integer class labels, NaN for float labels
# (regression, or binary labels given as 0/1 floats). Sources write it; the
# losses and metrics of `make_loss` and `make_metrics` skip such rows.
MISSING_LABEL = -1

# Whether a larger value of a metric is better. Losses and errors are lower-is-better.
METRIC_DIRECTIONS = {
    "accuracy": "higher",
    "auc": "higher",
    "mae": "lower",
    "rmse": "lower",
    "loss": "lower",
}


def output_units(task):
    """Width of the task's output layer."""
    return task.num_classes if task.kind == "multiclass" else 1


def output_activation(task):
    return {"multiclass": "softmax", "binary": "sigmoid", "regression": "linear"}[
        task.kind
    ]


def labelled(y_true, kind):
    """A boolean mask of the rows of `y_true` that carry a label.

    A missing label is `MISSING_LABEL` (-1; any negative value) or NaN for
    `multiclass` and `binary` tasks, NaN for `regression` ones.
    """
    y = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    if kind == "regression":
        return ops.logical_not(ops.isnan(y))
    return ops.greater_equal(y, 0.0)  # NaN >= 0 is False too


def _labelled_rows(y_true, sample_weight, kind):
    """`(y_true with 0 where missing, per-row weights with 0 where missing)`."""
    mask = labelled(y_true, kind)
    safe = ops.where(
        ops.reshape(mask, ops.shape(y_true)), y_true, ops.zeros_like(y_true)
    )
    weight = ops.cast(mask, "float32")
    if sample_weight is not None:
        weight = weight * ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
    return safe, mask, weight


def global_count(value):
    """`value` summed over the replicas of a strategy (itself outside one)."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


@keras.saving.register_keras_serializable(package="keras_mtl")
class MaskedLoss(keras.losses.Loss):
    """A task's loss over the rows that carry its label, at the global scale.

    `sum_i w_i l_i / n`, where the sum runs over this replica's labelled rows,
    `w_i` is the row's sample weight (1 by default) and `n` the number of
    labelled rows in the *global* batch (summed over the replicas). The
    optimizer sums the replicas' gradients, so the step is the mean over every
    labelled row of the global batch whatever the replica count, and a task
    labelled on 5 % of rows learns at the same scale as a complete one. A
    batch without any labelled row of the task contributes 0.

    Args:
        kind: `multiclass`, `binary` or `regression`.
        scale: Regression only: the target's standard deviation. The squared
            error is divided by `scale**2`, so the loss is the one of the
            standardised target while the model predicts in the target's
            units.
        name: The loss's name (`<task>_loss`).
    """

    def __init__(self, kind, scale=1.0, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.kind = kind
        self.scale = float(scale)
        self._per_row = {
            "multiclass": keras.losses.SparseCategoricalCrossentropy,
            "binary": keras.losses.BinaryCrossentropy,
            "regression": keras.losses.MeanSquaredError,
        }[kind](reduction="none")

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.cast(y_true, "float32")
        if self.kind != "multiclass" and len(y_true.shape) < len(y_pred.shape):
            y_true = ops.expand_dims(y_true, -1)
        safe, mask, weight = _labelled_rows(y_true, sample_weight, self.kind)
        per_row = ops.reshape(ops.cast(self._per_row(safe, y_pred), "float32"), (-1,))
        if self.kind == "regression" and self.scale != 1.0:
            per_row = per_row / (self.scale**2)
        total = ops.sum(per_row * weight)
        count = global_count(ops.sum(ops.cast(mask, "float32")))
        return ops.cast(ops.divide_no_nan(total, count), self.dtype)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "scale": self.scale}


def make_loss(task, scale=1.0):
    """A fresh Keras loss for the task (probabilities in, not logits).

    It skips rows whose label is missing (`MaskedLoss`); `scale` is a
    regression target's standard deviation (see `MaskedLoss`).
    """
    return MaskedLoss(task.kind, scale, name=f"{task.name}_loss")


class _LabelledRowsOnly:
    """Mixes into a Keras metric: rows without a label get weight 0."""

    kind = "multiclass"

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        safe, _, weight = _labelled_rows(
            ops.cast(y_true, "float32"), sample_weight, self.kind
        )
        safe = ops.cast(safe, y_true.dtype)
        return super().update_state(safe, y_pred, sample_weight=weight)


def _labelled_metric(base, kind):
    cls = type(f"Labelled{base.__name__}", (_LabelledRowsOnly, base), {"kind": kind})
    cls.__module__ = __name__
    cls.__doc__ = f"`keras.metrics.{base.__name__}` over the labelled rows only."
    return keras.saving.register_keras_serializable(package="keras_mtl")(cls)


LabelledSparseCategoricalAccuracy = _labelled_metric(
    keras.metrics.SparseCategoricalAccuracy, "multiclass"
)
LabelledAUC = _labelled_metric(keras.metrics.AUC, "binary")
LabelledBinaryAccuracy = _labelled_metric(keras.metrics.BinaryAccuracy, "binary")
LabelledMeanAbsoluteError = _labelled_metric(
    keras.metrics.MeanAbsoluteError, "regression"
)
LabelledRootMeanSquaredError = _labelled_metric(
    keras.metrics.RootMeanSquaredError, "regression"
)


def make_metrics(task):
    """Fresh Keras metrics for the task, headline metric first.

    Each skips the rows whose label is missing. Regression metrics are in the
    target's own units (the model predicts in them).
    """
    if task.kind == "multiclass":
        return [LabelledSparseCategoricalAccuracy(name="accuracy")]
    if task.kind == "binary":
        return [LabelledAUC(name="auc"), LabelledBinaryAccuracy(name="accuracy")]
    return [
        LabelledMeanAbsoluteError(name="mae"),
        LabelledRootMeanSquaredError(name="rmse"),
    ]


def headline_metric(task):
    """Name of the metric that summarises the task: accuracy, auc or mae."""
    return {"multiclass": "accuracy", "binary": "auc", "regression": "mae"}[task.kind]


def metric_direction(name):
    """`"higher"` or `"lower"`: which way `name` (e.g. `val_fine_auc`) improves."""
    for metric, direction in METRIC_DIRECTIONS.items():
        if name == metric or name.endswith("_" + metric):
            return direction
    raise ValueError(
        f"Unknown metric {name!r}. Expected a name ending in one of "
        f"{sorted(METRIC_DIRECTIONS)}."
    )


def find_task(config, task):
    """The `TaskConfig` of `config` named `task` (a name or a `TaskConfig`)."""
    name = getattr(task, "name", task)
    for candidate in config.tasks:
        if candidate.name == name:
            return candidate
    raise ValueError(
        f"No task {name!r} in the config. Expected one of {config.task_names}. "
        f"Received: task={name!r}"
    )
