"""`MultiTaskModel`: the functional model class that `build_model` returns.

It adds the loss weighting (`keras_mtl.weighting`) to `keras.Model`'s
training step and saves the weighting's state with the model's variables.
"""

import logging

import keras

from keras_mtl.compat.keras_trainer import FirstReplicaSymbolicBuild, own_variable_count

logger = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="keras_mtl")
class MultiTaskModel(FirstReplicaSymbolicBuild, keras.Model):
    """A functional `keras.Model` with one output per task.

    It differs from `keras.Model` in two places. Under a `tf.distribute`
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
    """

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
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from keras_mtl.weighting import weighting_from_config

        config = dict(config)
        weighting = config.pop("weighting", None)
        model = super().from_config(config, custom_objects=custom_objects)
        if weighting is not None:
            model.set_weighting(weighting_from_config(weighting))
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
