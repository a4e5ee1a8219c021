"""What every weighting method shares: per-task losses, replica scaling, the
training step, its state and the `<task>_weight` logs.

A method combines the task losses `L_i` into the loss the model minimises,
`sum_i w_i L_i` (plus a regulariser for `uncertainty`), and may update its own
state after each step (`update`) or epoch (its `callbacks`). `MultiTaskModel`
delegates `train_step` and `compute_loss` to it, so plain `model.fit` trains
with any method.

Under a `tf.distribute` strategy each replica sees its share of the batch.
Keras' built-in losses return the replica's mean divided by the replica count,
so that summing the replicas' gradients (which the optimizer does) gives the
global batch's gradient. Three rules keep every method replica-invariant:

1. A term added to the loss is divided by the replica count too
   (`scale_for_replicas`).
2. A weight that is a nonlinear function of the losses or gradients (FAMO's
   log-losses, GradNorm's norms, PCGrad's cosines) is computed from their
   global values (`global_sum` over the replicas), so every replica computes
   the same weights.
3. A gradient computed from global values is the same on every replica, and
   the optimizer sums the replicas' gradients: it is divided by the replica
   count before `apply_gradients` (`apply_own_gradients`).
"""

import keras
import tensorflow as tf
from keras import ops

from keras_mtl.compat import keras_trainer
from keras_mtl.config import weighting_methods


def replicas():
    """How many replicas share each global batch (1 outside a strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_for_replicas(value):
    """`value` divided by the replica count, as Keras scales its losses."""
    count = replicas()
    return value / count if count > 1 else value


def unscale_for_replicas(value):
    """`value` times the replica count: a replica's share back to a global mean."""
    count = replicas()
    return value * ops.cast(count, value.dtype) if count > 1 else value


def global_sum(value):
    """The sum of `value` over the replicas (in a replica context), else `value`.

    The replicas' scaled losses sum to the global batch's mean loss, and their
    gradients to the global gradient.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def apply_own_gradients(optimizer, gradients, variables):
    """Applies gradients that every replica computed alike from global values.

    The optimizer sums gradients over the replicas; dividing first makes the
    sum the gradient itself.
    """
    gradients = [scale_for_replicas(gradient) for gradient in gradients]
    optimizer.apply_gradients(zip(gradients, variables, strict=True))


def state_variable(value, name, trainable=False):
    """A float32 variable that the replicas may assign to alike (first one wins)."""
    return keras.Variable(
        ops.convert_to_tensor(value, "float32"),
        trainable=trainable,
        aggregation="only_first_replica",
        name=name,
    )


def _resolve(path, structure):
    for key in path:
        structure = structure[key]
    return structure


def task_losses(model, y, y_pred, sample_weight=None):
    """Each task's unweighted loss on this replica's share of the batch.

    It does what Keras' compiled loss does for each output (the same loss
    objects, the same replica scaling, the same `<task>_loss` trackers that
    Keras logs), but returns the losses one by one instead of their weighted
    sum.

    Args:
        model: A model compiled with one loss per named output.
        y: The labels, a dict keyed by output name.
        y_pred: The model's outputs, a dict keyed by output name.
        sample_weight: Optional sample weights, one array or a dict.

    Returns:
        A dict of output name -> scalar loss (divided by the replica count).
    """
    compile_loss = keras_trainer.compiled_loss(model)
    if compile_loss is None:
        raise ValueError(
            "The model has no compiled loss. Compile it with one loss per "
            "output (keras_mtl.compile_model does) before training."
        )
    losses = {}
    for path, loss_fn, tracker in keras_trainer.output_losses(compile_loss, y, y_pred):
        y_true_task, y_pred_task = _resolve(path, y), _resolve(path, y_pred)
        weight = (
            _resolve(path, sample_weight)
            if isinstance(sample_weight, dict)
            else sample_weight
        )
        value = ops.cast(loss_fn(y_true_task, y_pred_task, weight), compile_loss.dtype)
        if tracker is not None:
            tracker.update_state(
                unscale_for_replicas(value),
                sample_weight=tf.nest.flatten(y_pred_task)[0].shape[0],
            )
        losses[path[-1]] = value
    return losses


def compiled_loss_weights(model, task_names):
    """The compile-time `loss_weights` of the tasks (1.0 where none was given)."""
    weights = keras_trainer.user_loss_weights(model) or {}
    if not isinstance(weights, dict):
        raise ValueError(
            "Expected `loss_weights` compiled as a dict keyed by task name. "
            f"Received: loss_weights={weights!r}"
        )
    return ops.stack(
        [
            ops.cast(ops.convert_to_tensor(weights.get(name, 1.0)), "float32")
            for name in task_names
        ]
    )


def additional_losses(model):
    """The model's `add_loss` and regularisation losses, summed as Keras does."""
    extra = [
        keras_trainer.aggregate_additional_loss(model, loss) for loss in model.losses
    ]
    return ops.sum(extra) if extra else None


def track_total_loss(model, total, x):
    """Updates the `loss` that Keras logs, as its own `train_step` does."""
    batch = tf.shape(next(i for i in tf.nest.flatten(x) if i is not None))[0]
    keras_trainer.total_loss_tracker(model).update_state(
        unscale_for_replicas(total), sample_weight=batch
    )


class Weighting:
    """Base class of the weighting methods.

    A subclass sets `method` (its name in `keras_mtl.config.weighting_methods`,
    where it is registered), creates its state in `build_state`, and defines
    `loss_weights` (and optionally `regularizer`, `update`, `callbacks`); the
    gradient methods (`gradnorm`, `pcgrad`) override `train_step`.

    Args:
        task_names: The tasks in head order (Head 1's first).
    """

    method = ""

    def __init__(self, task_names):
        self.task_names = list(task_names)
        self.optimizer = None
        self.built = False

    # State -----------------------------------------------------------------

    def build(self, model):
        """Creates the method's variables under the model's strategy."""
        if len(self.task_names) != 2:
            raise ValueError(
                f"Weighting expects the two task names in head order. "
                f"Received: task_names={self.task_names}"
            )
        outputs = model.output if isinstance(model.output, dict) else {}
        missing = sorted(set(self.task_names) - set(outputs))
        if missing:
            raise ValueError(
                f"Weighting tasks {missing} are not outputs of the model "
                f"(expected a dict of outputs with keys {sorted(outputs)}). "
                f"Received: task_names={self.task_names}"
            )
        registered = self.method in weighting_methods.names()
        if registered and not weighting_methods.spec(self.method).allows_stop_gradient:
            weighting_methods.check_stop_gradient(
                self.method,
                getattr(model.get_layer("head2"), "stop_gradient", False),
                f"model {model.name!r}, whose Head 2 has stop_gradient=True",
            )
        with model.distribute_strategy.scope():
            self.build_state(model)
        self.built = True

    def build_state(self, model):
        """Creates variables; runs under the model's strategy scope."""

    def state_variables(self):
        """The method's own variables, saved with the model (not exported)."""
        return []

    @property
    def variables(self):
        """State and optimizer variables, in a fixed order for saving."""
        optimizer = self.optimizer.variables if self.optimizer is not None else []
        return [*self.state_variables(), *optimizer]

    def get_config(self):
        return {"method": self.method, "task_names": self.task_names}

    def callbacks(self):
        """Keras callbacks the method needs during `fit` (e.g. epoch updates)."""
        return []

    # The loss ------------------------------------------------------------

    def loss_weights(self, model, losses, training=True):
        """The weights `w_i` of this step, from the global task losses `[K]`."""
        raise NotImplementedError

    def regularizer(self):
        """A term added to the total loss (global, unscaled), or None."""
        return None

    def observe(self, model, losses):
        """Sees the global task losses of a step before its weights are set."""

    def update(self, model, losses):
        """Updates the method's state after a training step (global losses)."""

    def stacked_losses(self, model, y, y_pred, sample_weight):
        losses = task_losses(model, y, y_pred, sample_weight)
        return ops.stack([losses[name] for name in self.task_names])

    def total_loss(self, model, losses, weights):
        """`sum_i w_i L_i`, plus the regulariser and additional losses, scaled."""
        total = ops.sum(ops.cast(weights, losses.dtype) * losses)
        regularizer = self.regularizer()
        if regularizer is not None:
            total = total + scale_for_replicas(ops.cast(regularizer, total.dtype))
        extra = additional_losses(model)
        return total if extra is None else total + ops.cast(extra, total.dtype)

    def compute_loss(self, model, x, y, y_pred, sample_weight=None, training=True):
        """The total loss with the current weights (evaluation uses it)."""
        losses = self.stacked_losses(model, y, y_pred, sample_weight)
        weights = self.loss_weights(
            model, global_sum(ops.stop_gradient(losses)), training
        )
        return self.total_loss(model, losses, ops.stop_gradient(weights))

    def weight_logs(self, weights):
        return {f"{name}_weight": weights[i] for i, name in enumerate(self.task_names)}

    def train_step(self, model, data):
        """One step of `sum_i w_i L_i`: the weights are constants for the model."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            losses = self.stacked_losses(model, y, y_pred, sample_weight)
            with tape.stop_recording():
                global_losses = global_sum(ops.stop_gradient(losses))
                self.observe(model, global_losses)
                weights = ops.stop_gradient(self.loss_weights(model, global_losses))
            total = self.total_loss(model, losses, weights)
            track_total_loss(model, total, x)
            scaled = model.optimizer.scale_loss(total)
        variables = model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        model.optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.update(model, global_losses)
        logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {**logs, **self.weight_logs(weights)}
