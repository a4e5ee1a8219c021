"""The training step of the methods that combine the tasks' gradients on the
shared blocks (`pcgrad`, `db_mtl`, `imtl`, `aligned_mtl`, and through
`keras_mtl.weighting.gradient_combination` `fairgrad`, `nash_mtl`, `cagrad`).

The shared parameters are the Trunk and Head 1: both losses reach them, Loss 2
through Head 2, which reads Head 1's hidden features. Each task's gradient on
them is taken separately, summed over the replicas (so every replica combines
the same global gradients), divided by the optimizer's loss scale (mixed
precision) and handed to the method's `combine`. The combination, a global
value, is divided by the replica count before the optimizer sums it over the
replicas (rule 3 of `keras_mtl.weighting.base`) and multiplied back by the
loss scale, so that a `LossScaleOptimizer` unscales it and skips the step as
usual when a gradient overflowed. The other parameters (Head 2) get the sum
of the task targets' gradients, here Loss 2's alone.

Cost per step: two backward passes over the shared blocks (one per task)
instead of one, and an all-reduce of both tasks' shared gradients, as for
`pcgrad`.
"""

import math

import keras
import tensorflow as tf
from keras import ops

from keras_mtl.weighting.base import (
    Weighting,
    additional_losses,
    global_sum,
    scale_for_replicas,
    track_total_loss,
)


def shared_variable_indices(model):
    """Positions in `model.trainable_variables` of the Trunk's and Head 1's."""
    shared = {
        id(v)
        for name in ("trunk", "head1")
        for v in model.get_layer(name).trainable_variables
    }
    return [i for i, v in enumerate(model.trainable_variables) if id(v) in shared]


def _flatten(tensors):
    return ops.concatenate([ops.reshape(t, [-1]) for t in tensors], axis=0)


def _unflatten(flat, like):
    shapes = [tuple(t.shape) for t in like]
    pieces = tf.split(flat, [math.prod(shape) for shape in shapes])
    return [ops.reshape(p, s) for p, s in zip(pieces, shapes, strict=True)]


def shared_parameter_count(model):
    """How many numbers the Trunk and Head 1 train: the flat gradients' size."""
    variables = model.trainable_variables
    return sum(int(ops.size(variables[i])) for i in shared_variable_indices(model))


def all_finite(gradients):
    """Whether every entry of the flat gradients is finite (no overflow)."""
    return ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in gradients]))


class SharedGradientWeighting(Weighting):
    """Base of the methods that combine per-task gradients on Trunk and Head 1.

    A subclass defines `combine(model, gradients, global_losses)`, which maps
    the two tasks' flat global gradients on the shared parameters to the one
    gradient the optimizer applies and the `[K]` weights that the step logs,
    and may override `task_targets` (by default the tasks' losses times
    `loss_weights`) and `directions` (which two gradients on the shared
    parameters are combined: by default each target's). `loss_weights` gives
    the weights of the logged `loss` and of evaluation.

    Args:
        task_names: The tasks in head order.
    """

    def task_targets(self, model, losses, global_losses):
        """Each task's loss on this replica whose gradient is the task's."""
        weights = ops.cast(self.loss_weights(model, global_losses), losses.dtype)
        return [weights[i] * losses[i] for i in range(len(self.task_names))]

    def combine(self, model, gradients, global_losses):
        """`(flat shared gradient, [K] logged weights)` from the tasks' ones."""
        raise NotImplementedError

    def directions(self, tape, targets, shared):
        """This replica's two gradients on the shared variables that `combine`
        gets (summed over the replicas and unscaled first): by default each
        target's."""
        zero = tf.UnconnectedGradients.ZERO
        return tuple(
            tape.gradient(t, shared, unconnected_gradients=zero) for t in targets
        )

    def train_step(self, model, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        optimizer = model.optimizer
        with tf.GradientTape(persistent=True) as tape:
            y_pred = model(x, training=True)
            losses = self.stacked_losses(model, y, y_pred, sample_weight)
            with tape.stop_recording():
                global_losses = global_sum(ops.stop_gradient(losses))
                self.observe(model, global_losses)
                weights = ops.stop_gradient(self.loss_weights(model, global_losses))
                track_total_loss(model, self.total_loss(model, losses, weights), x)
            targets = self.task_targets(model, losses, global_losses)
            targets = [optimizer.scale_loss(target) for target in targets]
            extra = additional_losses(model)
            if extra is not None:
                extra = optimizer.scale_loss(extra)
        variables = model.trainable_variables
        # The tf.Variables: TensorFlow makes the zeros of unconnected ones itself.
        sources = [v.value for v in variables]
        shared_indices = shared_variable_indices(model)
        shared = [sources[i] for i in shared_indices]
        zero = tf.UnconnectedGradients.ZERO
        everything = targets if extra is None else [*targets, extra]
        gradients = [None] * len(sources)
        # Head 2 (and any variable outside Trunk and Head 1): the summed
        # targets' gradient, through Head 2 alone (Loss 1 never reaches it).
        other_indices = sorted(set(range(len(sources))) - set(shared_indices))
        if other_indices:
            others = tape.gradient(
                everything,
                [sources[i] for i in other_indices],
                unconnected_gradients=zero,
            )
            for i, gradient in zip(other_indices, others, strict=True):
                gradients[i] = gradient
        extra_shared = (
            tape.gradient(extra, shared, unconnected_gradients=zero)
            if extra is not None
            else None
        )
        first, second = self.directions(tape, targets, shared)
        del tape
        # 1.0, or the LossScaleOptimizer's current scale.
        scale = ops.cast(optimizer.scale_loss(ops.ones((), "float32")), "float32")
        task_gradients = [
            global_sum(ops.cast(_flatten(g), "float32")) / scale
            for g in (first, second)
        ]
        combined, logged = self.combine(model, task_gradients, global_losses)
        combined = _unflatten(scale_for_replicas(combined * scale), shared)
        for index, (i, gradient) in enumerate(
            zip(shared_indices, combined, strict=True)
        ):
            gradient = ops.cast(gradient, variables[i].dtype)
            if extra_shared is not None:
                gradient = gradient + extra_shared[index]
            gradients[i] = gradient
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        self.update(model, global_losses)
        logs = model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return {**logs, **self.weight_logs(logged)}
