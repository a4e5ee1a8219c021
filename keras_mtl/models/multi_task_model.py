"""`build_model`: Input -> Trunk -> Head 1 -> Head 2, built and compiled.

The seed diagram's boxes are the model's names: the inputs (one per feature),
`model.get_layer("trunk")`, `model.get_layer("head1")`,
`model.get_layer("head2")`, and one output per task, named after the task, each
with its own loss (Loss 1 on Head 1's prediction, Loss 2 on Head 2's).
"""

import logging

import keras
import tensorflow as tf

from keras_mtl import tasks as task_lib
from keras_mtl.compat.keras_trainer import FirstReplicaSymbolicBuild, own_variable_count
from keras_mtl.data.features import CategoricalFeature, ImageFeature, NumericFeature
from keras_mtl.models.heads import TaskHead
from keras_mtl.models.preprocessing import CleanStrings, FillMissing, StandardizeImage
from keras_mtl.models.trunk import ConvTrunk, MLPTrunk

DEFAULT_FEATURES = (ImageFeature("image", (32, 32, 3)),)

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


def _inputs_and_encoding(features):
    inputs, encoded = {}, []
    for feature in features:
        if isinstance(feature, ImageFeature):
            inputs[feature.name] = keras.Input(feature.shape, name=feature.name)
            encoded.append(StandardizeImage(name="standardize")(inputs[feature.name]))
        elif isinstance(feature, NumericFeature):
            inputs[feature.name] = keras.Input((), name=feature.name)
            x = FillMissing(feature.mean, name=f"fill_{feature.name}")(
                inputs[feature.name]
            )
            normalize = keras.layers.Normalization(
                mean=feature.mean,
                variance=max(feature.variance, 1e-12),
                name=f"normalize_{feature.name}",
            )
            encoded.append(normalize(x))
        elif isinstance(feature, CategoricalFeature):
            inputs[feature.name] = keras.Input((), dtype="string", name=feature.name)
            x = CleanStrings(feature.missing_values, name=f"clean_{feature.name}")(
                inputs[feature.name]
            )
            lookup = keras.layers.StringLookup(
                vocabulary=list(feature.vocabulary),
                output_mode="one_hot",
                name=f"lookup_{feature.name}",
            )
            encoded.append(lookup(x))
        else:
            raise TypeError(f"Unknown feature spec: {feature!r}")
    kinds = {type(feature) for feature in features}
    if ImageFeature in kinds and len(features) > 1:
        raise ValueError(
            "A model takes one image input or tabular columns, not both. "
            f"Received features: {[f.name for f in features]}"
        )
    if len(encoded) > 1:
        return inputs, keras.layers.Concatenate(name="encoded_columns")(encoded)
    return inputs, encoded[0]


def make_optimizer(train):
    """The optimizer named by `train.optimizer` at `train.learning_rate`."""
    optimizers = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": keras.optimizers.SGD,
    }
    optimizer = optimizers[train.optimizer](learning_rate=train.learning_rate)
    if train.mixed_precision:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def compile_model(model, config):
    """Compiles `model` with one loss, loss weight and metric list per task,
    and sets its loss weighting from `config.weighting`."""
    from keras_mtl.weighting import make_weighting

    model.compile(
        optimizer=make_optimizer(config.train),
        loss={task.name: task_lib.make_loss(task) for task in config.tasks},
        loss_weights={task.name: task.weight for task in config.tasks},
        metrics={task.name: task_lib.make_metrics(task) for task in config.tasks},
        jit_compile=config.train.jit_compile,
        steps_per_execution=config.train.steps_per_execution,
    )
    if isinstance(model, MultiTaskModel):
        model.set_weighting(make_weighting(config))
    elif config.weighting.method != "static":
        raise ValueError(
            f"weighting.method={config.weighting.method!r} needs a "
            f"keras_mtl.MultiTaskModel (build_model makes one). Received: "
            f"{type(model).__name__}"
        )
    return model


def build_model(config, features=None, *, strategy=None, compile=True):
    """Builds, and by default compiles, the two-head model of `config`.

    Building and compiling happen inside `strategy.scope()`; training, tuning
    and the notebooks all call this one function.

    Args:
        config: A `keras_mtl.Config`.
        features: The input specs (`Datasets.features`); defaults to one
            32x32x3 image named "image", the `shapes` input.
        strategy: A `tf.distribute.Strategy`; defaults to the current one.
        compile: Whether to compile with the tasks' losses, `loss_weights`
            and metrics.

    Returns:
        A `MultiTaskModel` whose outputs are a dict keyed by the task names.

    Example:

    ```python
    model = build_model(load_config("shapes"))
    model.get_layer("head2")
    ```
    """
    strategy = strategy or tf.distribute.get_strategy()
    features = tuple(features or DEFAULT_FEATURES)
    model_config = config.model
    dtype = "mixed_float16" if config.train.mixed_precision else None
    task1, task2 = config.tasks
    with strategy.scope():
        inputs, x = _inputs_and_encoding(features)
        if model_config.trunk == "cnn":
            trunk = ConvTrunk(
                model_config.width,
                model_config.depth,
                model_config.dropout,
                dtype=dtype,
                name="trunk",
            )
        else:
            trunk = MLPTrunk(
                model_config.width,
                model_config.depth,
                model_config.dropout,
                dtype=dtype,
                name="trunk",
            )
        shared = trunk(x)
        heads = []
        for index, task in enumerate(config.tasks):
            heads.append(
                TaskHead(
                    units=model_config.head_units,
                    output_units=task_lib.output_units(task),
                    output_activation=task_lib.output_activation(task),
                    depth=model_config.head_depth,
                    dropout=model_config.dropout,
                    stop_gradient=index == 1 and model_config.stop_gradient,
                    dtype=dtype,
                    name=f"head{index + 1}",
                )
            )
        head1_features, prediction1 = heads[0](shared)
        head2_inputs = head1_features
        if model_config.head2_input == "features+prediction":
            head2_inputs = [head1_features, prediction1]
        _, prediction2 = heads[1](head2_inputs)
        model = MultiTaskModel(
            inputs=inputs,
            outputs={task1.name: prediction1, task2.name: prediction2},
            name="multi_task_model",
        )
        if compile:
            compile_model(model, config)
    return model
