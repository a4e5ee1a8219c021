"""`build_model`: Input -> Trunk -> Head 1 -> Head 2, built and compiled.

The seed diagram's boxes are the model's names: the inputs (one per feature),
`model.get_layer("trunk")`, `model.get_layer("head1")`,
`model.get_layer("head2")`, and one output per task, named after the task, each
with its own loss (Loss 1 on Head 1's prediction, Loss 2 on Head 2's).

The blocks are made here once (`make_trunk`, `make_head`) and compiled here
once (`compile_model`), for the two-head model and for the single-task
baselines alike (`keras_mtl.models.single_task_model`).
"""

import keras
import tensorflow as tf

from keras_mtl import tasks as task_lib
from keras_mtl.data.features import normalized_targets
from keras_mtl.models.aitm import AITMHead
from keras_mtl.models.backbones import (
    backbone_trunk,
    initial_trunk_trainable,
    is_backbone,
)
from keras_mtl.models.heads import TaskHead
from keras_mtl.models.inputs import DEFAULT_FEATURES, make_inputs
from keras_mtl.models.links import link_heads
from keras_mtl.models.mmoe import MMoETrunk
from keras_mtl.models.multi_task_model import MultiTaskModel
from keras_mtl.models.ple import PLETrunk
from keras_mtl.models.trunk import ConvTrunk, MLPTrunk
from keras_mtl.steps_per_execution import resolve_steps_per_execution

TRUNKS = {"cnn": ConvTrunk, "mlp": MLPTrunk, "mmoe": MMoETrunk, "ple": PLETrunk}


def layer_dtype(config):
    """The blocks' dtype policy: `mixed_float16` with `train.mixed_precision`."""
    return "mixed_float16" if config.train.mixed_precision else None


def make_trunk(config, tasks=2):
    """The Trunk that `config.model.trunk` names, as the layer `"trunk"`.

    A gated-expert trunk (`mmoe`, `ple`) has one gate per task of `tasks`
    and returns one representation per task.
    """
    model = config.model
    if model.trunk not in TRUNKS:
        raise ValueError(
            f"make_trunk builds the trunks {sorted(TRUNKS)}; a backbone needs its "
            f"input shape (trunk_output builds it). Received: "
            f"model.trunk={model.trunk!r}"
        )
    common = {"dtype": layer_dtype(config), "name": "trunk"}
    experts = {
        "expert_units": model.expert_units,
        "depth": model.depth,
        "dropout": model.dropout,
        "tasks": tasks,
    }
    if model.trunk == "mmoe":
        return MMoETrunk(experts=model.experts, **experts, **common)
    if model.trunk == "ple":
        return PLETrunk(
            levels=model.ple_levels,
            shared_experts=model.experts,
            task_experts=model.task_experts,
            **experts,
            **common,
        )
    return TRUNKS[model.trunk](model.width, model.depth, model.dropout, **common)


def trunk_output(config, features, tasks=2):
    """The model's inputs and the Trunk's output on them.

    A built-in trunk reads the encoded inputs (`make_inputs`); a backbone
    (`keras_mtl.models.backbones`) reads the image with its own
    preprocessing instead of per-image standardisation.

    Args:
        config: A `keras_mtl.Config`.
        features: The input specs (`Datasets.features`).
        tasks: The number of tasks (one gate per task of a gated trunk).

    Returns:
        `(inputs, output)`: a dict of name -> `keras.Input`, and the Trunk's
        output (one tensor, or one per task of a gated trunk).
    """
    if is_backbone(config.model.trunk):
        inputs, images = make_inputs(features, standardize_images=False)
        if len(images.shape) != 4:
            raise ValueError(
                f"model.trunk={config.model.trunk!r} reads one image input "
                f"(height, width, channels). Received inputs: {sorted(inputs)} "
                f"encoded to shape {tuple(images.shape)}. Use model.trunk='mlp' "
                "for tabular data."
            )
        return inputs, backbone_trunk(config, images, layer_dtype(config))
    inputs, x = make_inputs(features)
    trunk = make_trunk(config, tasks)
    trunk.trainable = initial_trunk_trainable(config)
    return inputs, trunk(x)


def make_head(config, task, name, stop_gradient=False, head_class=TaskHead, **extra):
    """A `TaskHead` (or `head_class`, given `extra` arguments) of
    `config.model`'s size whose output fits `task`."""
    model = config.model
    return head_class(
        units=model.head_units,
        output_units=task_lib.output_units(task),
        output_activation=task_lib.output_activation(task),
        depth=model.head_depth,
        dropout=model.dropout,
        stop_gradient=stop_gradient,
        dtype=layer_dtype(config),
        name=name,
        **extra,
    )


def in_target_units(prediction, task, scale):
    """Head `task`'s prediction in its target's units (`y = z * std + mean`).

    The head learns the standardised target; a `keras.layers.Rescaling` named
    `<task>_in_units` turns it back, inside the model, so predictions, the
    export and the server answer in the target's units. Without a scale the
    prediction is returned as it is.
    """
    if scale is None:
        return prediction
    rescale = keras.layers.Rescaling(
        scale=scale.std, offset=scale.mean, dtype="float32", name=f"{task}_in_units"
    )
    return rescale(prediction)


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


def compile_model(model, config, tasks=None, scales=None, weighting=None):
    """Compiles `model` with one loss and metric list per task.

    With both of `config`'s tasks (the default) it also compiles their
    `loss_weights` and sets the loss weighting from `config.weighting`. With
    one task (a single-task baseline) the model is compiled with that task's
    loss and metrics alone, unweighted.

    Args:
        model: A model whose outputs are a dict keyed by task name.
        config: A `keras_mtl.Config`.
        tasks: The `TaskConfig`s of the model's outputs; default
            `config.tasks`.
        scales: Task name -> `TargetScale` of the regression targets that
            the model predicts in their units (see `in_target_units`).
        weighting: A built `keras_mtl.weighting.Weighting` to keep (a
            second compile between training phases); default a new one from
            `config.weighting`.

    Returns:
        The model.
    """
    from keras_mtl.weighting import make_weighting

    tasks = list(config.tasks if tasks is None else tasks)
    scales = scales or {}
    multi_task = len(tasks) > 1
    model.compile(
        optimizer=make_optimizer(config.train),
        loss={
            task.name: task_lib.make_loss(task, _std(scales.get(task.name)))
            for task in tasks
        },
        loss_weights=(
            {task.name: task.weight for task in tasks} if multi_task else None
        ),
        metrics={task.name: task_lib.make_metrics(task) for task in tasks},
        jit_compile=config.train.jit_compile,
        # "auto" (the default) becomes a number here, for callers of
        # `build_model` as for `train`; 1 on logical CPU devices.
        steps_per_execution=resolve_steps_per_execution(
            config.train.steps_per_execution, tf.distribute.get_strategy()
        ),
    )
    if not multi_task:
        return model
    if isinstance(model, MultiTaskModel):
        model.set_weighting(weighting or make_weighting(config))
    elif config.weighting.method != "static":
        raise ValueError(
            f"weighting.method={config.weighting.method!r} needs a "
            f"keras_mtl.MultiTaskModel (build_model makes one). Received: "
            f"{type(model).__name__}"
        )
    return model


def _std(scale):
    return 1.0 if scale is None else scale.std


def build_model(config, features=None, *, strategy=None, compile=True):
    """Builds, and by default compiles, the two-head model of `config`.

    Building and compiling happen inside `strategy.scope()`; training, tuning
    and the notebooks all call this one function.

    Args:
        config: A `keras_mtl.Config`.
        features: The input specs (`Datasets.features`); defaults to one
            32x32x3 image named "image", the `shapes` input. Its
            `TargetScale`s put regression predictions in their units.
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
    scales = normalized_targets(config, features)
    task1, task2 = config.tasks
    with strategy.scope():
        # The Trunk first: its initial weights then come from the same draws
        # as the single-task baselines' Trunk (built the same way), so a seed
        # starts the two-head model and the baselines from one Trunk.
        inputs, representation = trunk_output(config, features)
        head1 = make_head(config, task1, "head1")
        if config.model.head2_input == "aitm":
            link = {
                "head_class": AITMHead,
                "calibration": config.model.aitm_calibration,
            }
        else:
            link = {}
        head2 = make_head(
            config, task2, "head2", stop_gradient=config.model.stop_gradient, **link
        )
        prediction1, prediction2 = link_heads(config, representation, head1, head2)
        outputs = {
            task.name: in_target_units(prediction, task.name, scales.get(task.name))
            for task, prediction in ((task1, prediction1), (task2, prediction2))
        }
        model = MultiTaskModel(inputs=inputs, outputs=outputs, name="multi_task_model")
        if compile:
            compile_model(model, config, scales=scales)
    return model
