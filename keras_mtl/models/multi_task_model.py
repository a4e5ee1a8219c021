"""`MultiTaskModel`: the functional model class that `build_model` returns.

It adds the loss weighting (`keras_mtl.weighting`) to `keras.Model`'s
training step and saves the weighting's state with the model's variables,
runs in inference mode unless called with `training=True`, and keeps the
Trunk's frozen layers frozen through a `.keras` file.
"""

import logging

import keras

from keras_mtl.compat.keras_trainer import (
    ExactEpochSteps,
    FirstReplicaSymbolicBuild,
    own_variable_count,
)

logger = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="keras_mtl")
class MultiTaskModel(FirstReplicaSymbolicBuild, ExactEpochSteps, keras.Model):
    """A functional `keras.Model` with one output per task.

    It differs from `keras.Model` in five places. Under a `tf.distribute`
    strategy, Keras 3.15 averages the first distributed batch over the replicas
    only to learn its shapes before training, and averaging fails for string
    inputs such as raw CSV columns. This model takes the first replica's share
    of the batch instead, which has the same shapes
    (`keras_mtl.compat.keras_trainer.FirstReplicaSymbolicBuild`).

    And it trains with a loss weighting (`keras_mtl.weighting`, set by
    `compile_model` from `config.weighting` or with `set_weighting`):
    `train_step`, `compute_loss` and `fit` delegate to it. Its state is saved
    in `.keras` files and weight checkpoints but is not a tracked part of the
    model, so exported SavedModels never carry it.

    A call without `training` runs in inference mode (`training=False`):
    `model(x)` and the exported SavedModel's signatures, as `predict` and
    `evaluate` already do. A plain functional model passes `training=None`
    on, and in Keras 3.15 the first layer whose `call` defaults to
    `training=True` (`Resizing` in a KerasHub `ImageConverter`, the random
    augmentation layers) sets it for every layer after it in that call
    (fixed upstream in keras-team/keras#23166): the Trunk's batch norms then
    normalise with the batch's statistics and update their moving ones, and
    the augmentations transform the image.

    And a `.keras` file restores the Trunk's frozen layers (`trainable =
    False`): Keras saves each layer's flag only where the Trunk's config holds
    its layers (a `keras.applications` model), not inside a KerasHub backbone,
    which rebuilds its layers from its own arguments.

    And `fit` on an endless dataset with `steps_per_epoch` runs exactly that
    many steps an epoch, also when `steps_per_execution` does not divide it
    (`keras_mtl.compat.keras_trainer.ExactEpochSteps`); `keras_mtl.train`
    fits that way so that Keras keeps one iterator for the whole fit.
    """

    def call(self, inputs, training=False, mask=None, **kwargs):
        return super().call(inputs, training=training, mask=mask, **kwargs)

    @property
    def weighting(self):
        """The `keras_mtl.weighting.Weighting` in use, or None (plain Keras)."""
        return self.__dict__.get("_weighting")

    def set_weighting(self, weighting):
        """Trains with `weighting` from now on (None: plain Keras)."""
        if weighting is not None and not weighting.built:
            weighting.build(self)
        # A plain attribute: Keras and tf.train do not track the weighting, so
        # its variables stay out of `model.variables` and of exports.
        self.__dict__["_weighting"] = weighting
        self.train_function = self.test_function = None

    def train_step(self, data):
        if self.weighting is None:
            return super().train_step(data)
        return self.weighting.train_step(self, data)

    def compute_loss(
        self, x=None, y=None, y_pred=None, sample_weight=None, training=True
    ):
        if self.weighting is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        return self.weighting.compute_loss(self, x, y, y_pred, sample_weight, training)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, plus the callbacks the weighting needs (DWA's)."""
        extra = self.weighting.callbacks() if self.weighting is not None else []
        if extra:
            if len(args) > 5:  # `callbacks` passed by position
                args = (*args[:5], [*extra, *(args[5] or [])], *args[6:])
            else:
                kwargs["callbacks"] = [*extra, *(kwargs.get("callbacks") or [])]
        return super().fit(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        if self.weighting is not None:
            config["weighting"] = self.weighting.get_config()
        frozen = frozen_trunk_layers(self)
        if frozen:
            config["frozen_trunk_layers"] = frozen
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from keras_mtl.weighting import weighting_from_config

        config = dict(config)
        weighting = config.pop("weighting", None)
        frozen = config.pop("frozen_trunk_layers", [])
        model = super().from_config(config, custom_objects=custom_objects)
        if weighting is not None:
            model.set_weighting(weighting_from_config(weighting))
        freeze_trunk_layers(model, frozen)
        return model

    def save_own_variables(self, store):
        super().save_own_variables(store)
        offset = own_variable_count(self)
        for index, variable in enumerate(self._weighting_variables()):
            store[f"{offset + index}"] = variable

    def load_own_variables(self, store):
        own = own_variable_count(self)
        extra = self._weighting_variables()
        saved = len(store.keys())
        if saved not in (own, own + len(extra)):
            raise ValueError(
                f"The weights file holds {saved - own} loss-weighting variables "
                f"but this model's weighting ({self.weighting.method!r}) has "
                f"{len(extra)}. Load it into a model built with the same "
                "weighting.method."
            )
        super().load_own_variables({str(i): store[str(i)] for i in range(own)})
        if saved == own and extra:
            logger.warning(
                "The weights file holds no %r weighting state; it starts afresh.",
                self.weighting.method,
            )
        for index, variable in enumerate(extra if saved > own else []):
            variable.assign(store[f"{own + index}"])

    def _weighting_variables(self):
        return self.weighting.variables if self.weighting is not None else []


def _trunk(model):
    try:
        return model.get_layer("trunk")
    except ValueError:  # A model without the diagram's Trunk.
        return None


def _nested_layers(trunk):
    """`(path, layer)` for every layer nested in `trunk`, the path made of
    the layer names below it (`"conv1_bn"`, `"block/bn"`)."""
    stack = [("", trunk)]
    while stack:
        prefix, layer = stack.pop()
        for inner in getattr(layer, "layers", []):
            if isinstance(inner, keras.layers.InputLayer):
                continue  # No weights, and a generated name (input_layer_3).
            path = f"{prefix}{inner.name}"
            yield path, inner
            stack.append((f"{path}/", inner))


def frozen_trunk_layers(model):
    """The sorted paths of the Trunk's layers with `trainable = False`, and
    `""` first when the Trunk itself is frozen."""
    trunk = _trunk(model)
    if trunk is None:
        return []
    nested = sorted(
        path for path, layer in _nested_layers(trunk) if not layer.trainable
    )
    return nested if trunk.trainable else ["", *nested]


def freeze_trunk_layers(model, paths):
    """Sets `trainable = False` on the Trunk's layers at `paths` (as
    `frozen_trunk_layers` returns them); a path it does not hold is skipped."""
    trunk = _trunk(model)
    paths = set(paths)
    if trunk is None or not paths:
        return
    if "" in paths:
        trunk.trainable = False
    for path, layer in _nested_layers(trunk):
        if path in paths:
            layer.trainable = False
