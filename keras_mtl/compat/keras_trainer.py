"""Keras' trainer internals: the compiled loss, the loss tracker, the build.

keras-mtl's loss weightings compute each task's loss themselves and then do
what Keras' own `train_step` does with the total. Keras 3.15 offers no public
API for either half, so the private names are reached here, and only here:

- `Trainer._compile_loss` (a `CompileLoss`), its `_flat_losses` (one
  `(path, loss_fn, loss_weight, name)` per output, in the order of its
  per-output `<task>_loss` metrics) and its `_user_loss_weights` (the
  `loss_weights` passed to `compile`);
- `Trainer._aggregate_additional_loss` (how Keras sums and scales `add_loss`
  terms) and `Trainer._loss_tracker` (the logged `loss`);
- `Trainer._initial_epoch` (where `fit` starts after a backup was restored);
- `Layer._trainable_variables` / `_non_trainable_variables` (the variables
  that `Layer.save_own_variables` writes, by index);
- `TensorFlowTrainer._maybe_symbolic_build`, `Trainer._symbolic_build` and
  `Trainer._distribute_strategy` (the build from the first batch under a
  strategy; see `FirstReplicaSymbolicBuild`);
- no private name, but a workaround of the trainer's behaviour: a train
  function made and called while `steps_per_execution` is r runs r steps a
  call (`ExactEpochSteps`, which runs an epoch's last, shorter call so).

Each has a canary test in `tests/test_compat.py`.
"""

import collections
import contextlib
import inspect

import keras
import tensorflow as tf

from keras_mtl.compat.internals import attribute, require

WEIGHTING = "loss weighting (keras_mtl.weighting)"
BUILD = "MultiTaskModel's build under a tf.distribute strategy"
BACKUP = "MultiWorkerBackupAndRestore"
SAVING = "MultiTaskModel's weighting state in saved weights"

OutputLoss = collections.namedtuple("OutputLoss", ["path", "loss_fn", "tracker"])
OutputLoss.__doc__ = """One output's compiled loss.

Attributes:
    path: The output's path in `y_pred`, e.g. `("coarse",)`.
    loss_fn: The Keras loss object, called as `loss_fn(y_true, y_pred, weight)`.
    tracker: The `keras.metrics.Mean` that Keras logs as `<output>_loss`, or
        None when the model has one loss (Keras then logs only `loss`).
"""


def compiled_loss(model, feature=WEIGHTING):
    """The model's compiled loss (`CompileLoss`), or None before `compile`."""
    return attribute(model, "_compile_loss", feature, owner="Trainer")


def output_losses(compile_loss, y, y_pred, feature=WEIGHTING):
    """Each output's `OutputLoss`, building `compile_loss` on first use.

    Args:
        compile_loss: What `compiled_loss(model)` returned (not None).
        y: The labels (builds the compiled loss on first use).
        y_pred: The model's outputs.
        feature: The keras-mtl feature asking (for the error message).

    Returns:
        A list of `OutputLoss`, in the compiled loss's order.
    """
    if not compile_loss.built:
        compile_loss.build(y, y_pred)
    flat_losses = attribute(compile_loss, "_flat_losses", feature)
    trackers = compile_loss.metrics or [None] * len(flat_losses)
    return [
        OutputLoss(path, loss_fn, tracker)
        for (path, loss_fn, _, _), tracker in zip(flat_losses, trackers, strict=True)
    ]


def user_loss_weights(model, feature=WEIGHTING):
    """The `loss_weights` given to `model.compile` (None when none were)."""
    return attribute(compiled_loss(model, feature), "_user_loss_weights", feature)


def aggregate_additional_loss(model, loss, feature=WEIGHTING):
    """One `add_loss`/regularisation loss, reduced and scaled as Keras does."""
    return attribute(model, "_aggregate_additional_loss", feature, "Trainer")(loss)


def total_loss_tracker(model, feature=WEIGHTING):
    """The `keras.metrics.Mean` that Keras logs as `loss`."""
    return attribute(model, "_loss_tracker", feature, owner="Trainer")


def set_initial_epoch(model, epoch, feature=BACKUP):
    """Makes the running `fit` continue after `epoch` finished epochs, as
    Keras' `BackupAndRestore` does when it restores a backup."""
    require(model, "_initial_epoch", feature, owner="Trainer")
    model._initial_epoch = epoch


def own_variable_count(layer, feature=SAVING):
    """How many variables `Layer.save_own_variables` writes for `layer` itself
    (keys `"0"` .. `"n-1"`); the variables of its sublayers are not counted."""
    trainable = attribute(layer, "_trainable_variables", feature, owner="Layer")
    non_trainable = attribute(layer, "_non_trainable_variables", feature, "Layer")
    return len(trainable + non_trainable)


class FirstReplicaSymbolicBuild:
    """Builds a model under a strategy from the first replica's share of a batch.

    Under a `tf.distribute` strategy Keras 3.15's TensorFlow trainer averages
    the first distributed batch over the replicas (`_maybe_symbolic_build`),
    only to learn its shapes before training, and averaging fails for string
    inputs such as raw CSV columns, and under `MultiWorkerMirroredStrategy`
    (keras #20585). The first replica's share has the same shapes. A mixin
    for `keras.Model` subclasses; `tests/test_distribute.py` tells when Keras
    no longer needs it.
    """

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = attribute(self, "_distribute_strategy", BUILD, owner="Trainer")
        if strategy is None or iterator is None:
            return super()._maybe_symbolic_build(iterator, data_batch)
        # Keras' epoch iterator yields (step, end step, distributed iterator).
        for _, _, distributed_iterator in iterator:
            batch = next(distributed_iterator)
            data_batch = tf.nest.map_structure(
                lambda value: (
                    strategy.experimental_local_results(value)[0]
                    if isinstance(value, tf.distribute.DistributedValues)
                    else value
                ),
                batch,
            )
            break
        symbolic_build = attribute(self, "_symbolic_build", BUILD, owner="Trainer")
        with strategy.scope():
            symbolic_build(data_batch=data_batch)


class ExactEpochSteps:
    """`fit` on an endless dataset runs exactly `steps_per_epoch` steps an epoch.

    Keras 3.15 runs `steps_per_execution` (k) steps per call of its train
    function and calls it ceil(n / k) times an epoch of `steps_per_epoch` (n)
    steps. When k does not divide n the last call runs k steps too, into the
    next epoch's batches: with n = 89 and k = 16 every epoch trains 96 steps
    and starts 7 batches later in the data than the one before. On an endless
    dataset (infinite cardinality, which is what `keras_mtl.train` fits on:
    `keras_mtl.data.repeat_epochs`), this mixin runs the last call of each
    epoch with a second train function of n mod k steps, and its progress bar
    stops at n. Other inputs train as in Keras.

    Keras' TensorFlow trainer reads `steps_per_execution` when it traces its
    train function, at the function's first call; the second function is
    made and called while the attribute says n mod k, so that it runs n mod
    k steps whenever Keras reads it. A mixin for `keras.Model` subclasses;
    `tests/test_compat.py` checks that a function called so runs that many
    steps, and tells when Keras runs exact epochs itself.
    """

    def fit(self, *args, **kwargs):
        bound = inspect.signature(keras.Model.fit).bind(self, *args, **kwargs)
        x = bound.arguments.get("x")
        steps = bound.arguments.get("steps_per_epoch")
        endless = (
            isinstance(x, tf.data.Dataset)
            and int(x.cardinality()) == tf.data.INFINITE_CARDINALITY
        )
        exact = bool(steps and endless)
        self.__dict__["_exact_epoch"] = [int(steps), 0] if exact else None
        callbacks = bound.arguments.get("callbacks") or []
        if (
            exact
            and bound.arguments.get("verbose", "auto") != 0
            and isinstance(callbacks, list | tuple)
            and not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks)
        ):
            bound.arguments["callbacks"] = [*callbacks, _EpochProgbar()]
        try:
            return super().fit(*bound.args[1:], **bound.kwargs)
        finally:
            self.__dict__["_exact_epoch"] = None

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        super().make_train_function(force=True)
        whole, per_call, tails = self.train_function, self.steps_per_execution, {}

        def train_function(iterator):
            epoch = self.__dict__.get("_exact_epoch")
            if not epoch or epoch[0] % per_call == 0:
                return whole(iterator)
            steps, call = epoch
            epoch[1] += 1
            calls = -(-steps // per_call)
            if call % calls != calls - 1:
                return whole(iterator)
            rest = steps % per_call
            with _steps_per_call(self, rest):
                if rest not in tails:
                    super(ExactEpochSteps, self).make_train_function(force=True)
                    tails[rest] = self.train_function
                return tails[rest](iterator)

        self.train_function = train_function
        return train_function


class _EpochProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, never past the epoch's last step.

    Keras reports a call's last step as its first plus `steps_per_execution`
    - 1, which for an epoch's shorter last call (`ExactEpochSteps`) is past
    the epoch's end: the bar would show 96/89 before it settles on 89/89.
    (Keras adds its own only where `fit` gets none, and `verbose` still
    decides what it prints.)
    """

    def on_train_batch_end(self, batch, logs=None):
        if self.target is not None:
            batch = min(batch, self.target - 1)
        super().on_train_batch_end(batch, logs)


@contextlib.contextmanager
def _steps_per_call(model, steps):
    """`model.steps_per_execution` is `steps` inside; `train_function` is kept."""
    saved = model.steps_per_execution, model.train_function
    model.steps_per_execution = steps
    try:
        yield
    finally:
        model.steps_per_execution, model.train_function = saved
