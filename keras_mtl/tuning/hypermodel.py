"""`MultiTaskHyperModel`: the search space of `[tuning]` over `build_model`.

| hyperparameter | from | sets |
|---|---|---|
| `weight_ratio` | `tuning.weight_ratio = [min, max]`, log scale | Head 2's loss weight; Head 1's is 1 |
| `learning_rate` | `tuning.learning_rate = [min, max]`, log scale (optional) | `train.learning_rate` |
| any config key | `tuning.choices`, e.g. `model.width = [16, 32]` | that key |

Each hyperparameter's default is the config's own value (the ratio of its
two loss weights, `train.learning_rate`, the key's value when it is one of
the choices): the reference trial that every search runs first.

Under Adam, multiplying both loss weights by the same factor leaves training
almost unchanged (the update divides by the gradient's scale), so only the
ratio is searched. `tuning.choices` takes any key of `[model]`, `[train]` or a
later section such as `[weighting]` (`"weighting.method" = [...]`); keys that
change the data, the tasks, the batching or the run's place are refused.
"""

import keras
import keras_tuner as kt
import tensorflow as tf

from keras_mtl.config import config_from_dict
from keras_mtl.data.features import normalized_targets
from keras_mtl.data.pipeline import repeat_epochs
from keras_mtl.fine_tuning import enter_phase, merge_histories, training_phases
from keras_mtl.models import build_model
from keras_mtl.steps_per_execution import with_steps_per_execution
from keras_mtl.tuning.objectives import TaskObjectives

# Keys `tuning.choices` may not set: the data and batches are built once per
# search, the tasks' weights are `weight_ratio`, and the run's place is fixed.
FIXED_KEYS = (
    "name",
    "data",
    "tasks",
    "tuning",
    "export",
    "train.batch_size",
    "train.epochs",
    "train.run_dir",
    "train.strategy",
    "train.replicas",
    "train.seed",
    "train.learning_rate",
)


def _set_key(tree, key, value):
    *sections, leaf = key.split(".")
    for section in sections:
        tree = tree.setdefault(section, {})
        if not isinstance(tree, dict):
            raise ValueError(f"{section!r} is not a section")
    tree[leaf] = value


def _get_key(tree, key):
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _clip(value, low, high):
    return min(max(float(value), low), high)


def reference_ratio(config):
    """Head 2's loss weight over Head 1's in `config`: the reference trial's."""
    first, second = (task.weight for task in config.tasks)
    return second / first


def apply_values(config, values):
    """`config` with hyperparameter values applied (the keys of the table).

    Args:
        config: The base `Config`.
        values: `{"weight_ratio": r, "learning_rate": lr, <config key>: v}`;
            other names (Keras Tuner's `tuner/...`) are ignored.

    Returns:
        A validated `Config` for one trial.
    """
    raw = config.to_dict()
    if "weight_ratio" in values:
        raw["tasks"][0]["weight"] = 1.0
        raw["tasks"][1]["weight"] = float(values["weight_ratio"])
    if "learning_rate" in values:
        raw["train"]["learning_rate"] = float(values["learning_rate"])
    for key in config.tuning.choices:
        if key in values:
            _set_key(raw, key, values[key])
    return config_from_dict(raw, "<trial>")


def check_search_space(config):
    """Refuses `tuning.choices` that cannot be tuned, naming the key.

    Raises:
        ValueError: A fixed key, mixed value types, or a value the config
            refuses.
    """
    first, second = (task.weight for task in config.tasks)
    low, high = config.tuning.weight_ratio
    if first <= 0 or not low <= second / first <= high:
        raise ValueError(
            "The reference trial of a search has the config's own loss weights, "
            f"so their ratio tasks[1].weight / tasks[0].weight = {second}/{first} "
            f"must lie in tuning.weight_ratio = {[low, high]}. Widen "
            "tuning.weight_ratio or set the task weights inside it. Received: "
            f"tasks weights {[first, second]}, tuning.weight_ratio={[low, high]}"
        )
    for key, values in config.tuning.choices.items():
        where = f"tuning.choices.{key}"
        if any(key == fixed or key.startswith(fixed + ".") for fixed in FIXED_KEYS):
            raise ValueError(
                f"`{where}` cannot be tuned: the data, tasks, batches and run "
                "directory are fixed for a search; loss weights are tuned through "
                "tuning.weight_ratio and the learning rate through "
                f"tuning.learning_rate. Received: {where}={values!r}"
            )
        if len({type(value) for value in values}) != 1 or isinstance(
            values[0], list | dict
        ):
            raise ValueError(
                f"`{where}` must be a list of numbers, strings or booleans of one "
                f"type. Received: {where}={values!r}"
            )
        for value in values:
            try:
                apply_values(config, {key: value})
            except ValueError as error:
                raise ValueError(f"`{where}`: {error}") from None


class MultiTaskHyperModel(kt.HyperModel):
    """A Keras Tuner `HyperModel` over `keras_mtl.build_model`.

    `build(hp)` samples the `[tuning]` search space, applies it to the config
    and calls the same `build_model` that `keras_mtl.train` calls; Keras Tuner
    enters its `distribution_strategy`'s scope first. `fit` adds
    `TaskObjectives`, so every epoch logs `val_unweighted_loss` (and
    `val_delta_m` given baselines).

    Args:
        config: The base `Config` (its `[tuning]` section is the space).
        features: The input specs (`Datasets.features`).
        baselines: The single-task baselines' validation metrics
            `{task: {metric: value}}`, or None.

    Example:

    ```python
    hypermodel = MultiTaskHyperModel(config, datasets.features)
    tuner = keras_tuner.RandomSearch(
        hypermodel, objective=keras_tuner.Objective("val_unweighted_loss", "min"),
        max_trials=10,
    )
    tuner.search(datasets.train, validation_data=datasets.validation, epochs=5)
    ```
    """

    def __init__(self, config, features=None, baselines=None, **kwargs):
        super().__init__(name=kwargs.pop("name", "keras_mtl"), **kwargs)
        check_search_space(config)
        self.config = config
        self.features = features
        self.baselines = baselines
        # Which execution of a trial `build` builds (`SeededExecutions`).
        self.execution = 0

    def declare(self, hp):
        """Declares the search space in `hp`; returns the sampled values."""
        config, tuning = self.config, self.config.tuning
        low, high = tuning.weight_ratio
        values = {}
        if low == high:
            values["weight_ratio"] = hp.Fixed("weight_ratio", low)
        else:
            values["weight_ratio"] = hp.Float(
                "weight_ratio",
                low,
                high,
                sampling="log",
                default=reference_ratio(config),
            )
        if tuning.learning_rate:
            low, high = tuning.learning_rate
            values["learning_rate"] = hp.Float(
                "learning_rate",
                low,
                high,
                sampling="log",
                default=_clip(config.train.learning_rate, low, high),
            )
        for key, choices in tuning.choices.items():
            current = _get_key(config.to_dict(), key)
            default = current if current in choices else None
            values[key] = hp.Choice(key, choices, default=default)
        return values

    def trial_config(self, hp):
        """The `Config` of a trial, from its `HyperParameters` or their values."""
        values = hp.values if isinstance(hp, kt.HyperParameters) else hp
        return apply_values(self.config, values)

    def build(self, hp):
        config = apply_values(self.config, self.declare(hp))
        # Trials differ by their hyperparameters, not their initialisation;
        # execution k of every trial starts from train.seed + k.
        keras.utils.set_random_seed(config.train.seed + self.execution)
        # Inside the tuner's strategy scope: "auto" and the logical-CPU fallback.
        config = with_steps_per_execution(config, tf.distribute.get_strategy())
        return build_model(config, self.features)

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        """Trains a trial's model, in two phases with `train.freeze_epochs`.

        As `keras_mtl.train` does, the heads train alone (the Trunk frozen)
        for `train.freeze_epochs` epochs, then the whole model from that
        epoch on at `train.fine_tune_learning_rate`, recompiled with its
        loss weighting kept. The tuner's callbacks see one run of epochs
        `0 .. epochs - 1`, and the trial's metrics come from both phases.
        """
        callbacks = [
            TaskObjectives(self.config.tasks, self.baselines),
            *(callbacks or []),
        ]
        # Phase 2 compiles again: with the steps per call `build` resolved.
        config = with_steps_per_execution(
            self.trial_config(hp), model.distribute_strategy
        )
        args, kwargs = _one_iterator(args, kwargs)
        epochs = kwargs.pop("epochs", config.train.epochs)
        # Hyperband continues a model of an earlier round from `initial_epoch`.
        start = kwargs.pop("initial_epoch", 0)
        phases = [
            p
            for p in training_phases(config)
            if p.first_epoch < epochs and p.last_epoch > start
        ] or training_phases(config)[-1:]
        histories = []
        for phase in phases:
            if phase.first_epoch > 0:  # `build` made phase 1's model.
                scales = normalized_targets(config, self.features or ())
                enter_phase(model, config, phase, scales)
            histories.append(
                model.fit(
                    *args,
                    callbacks=callbacks,
                    initial_epoch=max(phase.first_epoch, start),
                    epochs=epochs if phase is phases[-1] else phase.last_epoch,
                    **kwargs,
                )
            )
        return merge_histories(histories)


def _one_iterator(args, kwargs):
    """`fit`'s arguments with a training dataset of known length repeated, so
    that Keras keeps one iterator for all epochs (`repeat_epochs`)."""
    x = args[0] if args else kwargs.get("x")
    if "steps_per_epoch" in kwargs or not isinstance(x, tf.data.Dataset):
        return args, kwargs
    x, steps = repeat_epochs(x)
    kwargs = {key: value for key, value in kwargs.items() if key != "x"}
    if steps:
        kwargs["steps_per_epoch"] = steps
    return (x, *args[1:]), kwargs
