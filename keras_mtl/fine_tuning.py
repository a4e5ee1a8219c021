"""Two-phase training: the heads alone, then the whole model.

With `train.freeze_epochs = N` (and `model.trunk_trainable = true`), `train`
runs the Keras transfer-learning recipe as two `model.fit` calls:

| phase | epochs | Trunk | learning rate |
|---|---|---|---|
| 1 | `0 .. N-1` | frozen (`trainable = False`; its batch norms in inference mode) | `train.learning_rate` |
| 2 | `N .. train.epochs-1` | trainable (a pretrained backbone's batch norms stay frozen) | `train.fine_tune_learning_rate` |

Between them the model is compiled again (a new optimizer over the new set of
trainable variables, at the new rate), keeping its loss weighting and that
weighting's state. `model.trunk_trainable = false` is one phase with the
Trunk frozen throughout.

The run directory's guarantees hold across the boundary: the backup is kept
at the end of phase 1 and written again, in phase 2's layout (the new
optimizer), before phase 2 starts; a rerun whose backup is at or after epoch
N goes straight to phase 2 with the Trunk trainable and the fine-tuning rate,
and `history.csv` holds every epoch once.
"""

import typing

import keras

from keras_mtl.models.backbones import is_backbone, set_trunk_trainable


class Phase(typing.NamedTuple):
    """Epochs `first_epoch .. last_epoch - 1` with the Trunk `trunk_trainable`."""

    first_epoch: int
    last_epoch: int
    trunk_trainable: bool
    learning_rate: float


def training_phases(config):
    """The run's `Phase`s in order: one, or two with `train.freeze_epochs`."""
    train = config.train
    if not train.freeze_epochs:
        return [
            Phase(0, train.epochs, config.model.trunk_trainable, train.learning_rate)
        ]
    return [
        Phase(0, train.freeze_epochs, False, train.learning_rate),
        Phase(train.freeze_epochs, train.epochs, True, train.fine_tune_learning_rate),
    ]


def enter_phase(model, config, phase, scales=None, tasks=None):
    """Sets the Trunk's trainable state and compiles `model` for `phase`.

    The loss weighting (and its learned or accumulated state) is kept; the
    optimizer is new, at `phase.learning_rate`, and built over the phase's
    trainable variables.

    Args:
        model: The model `build_model(config)` made.
        config: A `keras_mtl.Config`.
        phase: A `Phase` of `training_phases(config)`.
        scales: The regression targets' `TargetScale`s (as `build_model`).
        tasks: The model's tasks (one for a single-task baseline); default
            `config.tasks`.
    """
    from keras_mtl.models import compile_model

    model_config = config.model
    pretrained = (
        is_backbone(model_config.trunk) and model_config.trunk_weights != "none"
    )
    set_trunk_trainable(model.get_layer("trunk"), phase.trunk_trainable, pretrained)
    phase_config = config.replace([f"train.learning_rate={phase.learning_rate!r}"])
    with model.distribute_strategy.scope():
        compile_model(
            model, phase_config, tasks, scales=scales, weighting=model.weighting
        )
        model.optimizer.build(model.trainable_variables)


def merge_histories(histories):
    """One `keras.callbacks.History` holding the epochs of all `histories`."""
    if len(histories) == 1:
        return histories[0]
    merged = keras.callbacks.History()
    merged.epoch, merged.history = [], {}
    for history in histories:
        merged.set_model(history.model)
        merged.params = history.params
        merged.epoch += list(history.epoch)
        for key, values in history.history.items():
            merged.history.setdefault(key, []).extend(values)
    return merged
