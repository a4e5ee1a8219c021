"""Checks a built `Config` for values that its types allow but a run cannot use."""

import math
import re

from keras_mtl.config import weighting_methods

DATA_SOURCES = ("shapes", "tfds", "csv", "images")
IMAGE_INPUTS = ("float", "bytes")
# keras_mtl.models.augmentation builds one Keras layer (or two) per name.
AUGMENTATIONS = (
    "flip",
    "crop",
    "rotation",
    "zoom",
    "translation",
    "contrast",
    "brightness",
)
TASK_KINDS = ("multiclass", "binary", "regression")
TRUNKS = ("mlp", "cnn", "mmoe", "ple")
BACKBONE_TRUNKS = ("keras.applications.<Name>", "keras_hub:<preset>")
IMAGE_RANGES = ("0-255", "0-1")
HEAD2_INPUTS = ("features", "features+prediction", "esmm", "aitm")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
LR_SCHEDULES = ("none", "cosine", "plateau")
OPTIMIZERS = ("adam", "adamw", "sgd")
TUNERS = ("random", "bayesian", "hyperband")
MISSING_LABELS = ("mask", "drop")
SPLITS = ("train", "validation", "test")
# `name` is one path component of the run and export directories: no `/`,
# no `..`, nothing hidden.
NAME_PATTERN = re.compile(r"[\w-][\w.-]*")


def _fail(source, key, expected, value):
    raise ValueError(f"{source}: `{key}` must be {expected}. Received: {key}={value!r}")


def _one_of(source, key, value, choices):
    if value not in choices:
        _fail(source, key, f"one of {list(choices)}", value)


def _at_least(source, key, value, minimum):
    if not value >= minimum or (isinstance(value, float) and not math.isfinite(value)):
        _fail(source, key, f">= {minimum}", value)


def validate(config, source):
    """Raises `ValueError` naming the key and `source` for an impossible value."""
    if not NAME_PATTERN.fullmatch(config.name):
        _fail(
            source,
            "name",
            "one directory name of letters, digits, '_', '-' and '.', not "
            "starting with '.', such as 'shapes-v2' (it names "
            "<train.run_dir>/<name> and <export.base_dir>/<name>)",
            config.name,
        )
    _validate_data(config.data, source)
    _validate_tasks(config, source)
    _validate_labels(config, source)
    _validate_model(config.model, source)
    _validate_link(config, source)
    _validate_train(config.train, source)
    if config.train.freeze_epochs and not config.model.trunk_trainable:
        _fail(
            source,
            "train.freeze_epochs",
            "0 when model.trunk_trainable=false (the Trunk stays frozen; "
            "freeze_epochs unfreezes it after N epochs)",
            config.train.freeze_epochs,
        )
    _validate_weighting(config, source)
    _validate_tuning(config.tuning, source)
    _validate_export(config.export, source, len(config.tasks))


def _validate_data(data, source):
    _one_of(source, "data.source", data.source, DATA_SOURCES)
    if data.source in ("csv", "images") and not data.path:
        _fail(
            source,
            "data.path",
            f"the path of a CSV file when data.source={data.source!r}",
            "",
        )
    if data.source == "images":
        if not data.image_column:
            _fail(source, "data.image_column", "the CSV column of image paths", "")
        size = data.image_size
        if (
            len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)
            or min(size) < 1
        ):
            _fail(source, "data.image_size", "[height, width], two integers >= 1", size)
    for name in data.augment:
        _one_of(source, "data.augment", name, AUGMENTATIONS)
    if data.augment and data.source == "csv":
        _fail(
            source,
            "data.augment",
            "empty for tabular data (data.source='csv')",
            data.augment,
        )
    if data.source == "tfds" and not data.dataset:
        _fail(source, "data.dataset", "a TFDS dataset name such as 'cifar100'", "")
    for key in ("test_fraction", "validation_fraction"):
        value = getattr(data, key)
        if not 0.0 <= value < 1.0:
            _fail(source, f"data.{key}", "in [0, 1)", value)
    if data.test_fraction + data.validation_fraction >= 1.0:
        _fail(
            source,
            "data.validation_fraction",
            f"< 1 - data.test_fraction = {1 - data.test_fraction}",
            data.validation_fraction,
        )
    _at_least(source, "data.max_examples", data.max_examples, 0)
    _at_least(source, "data.shuffle_buffer", data.shuffle_buffer, 1)


def _validate_tasks(config, source):
    if len(config.tasks) != 2:
        raise ValueError(
            f"{source}: expected exactly two [[tasks]] tables, Head 1's task then "
            f"Head 2's. Received: {len(config.tasks)} task(s)"
        )
    names = config.task_names
    if len(set(names)) != 2:
        _fail(source, "tasks.name", "two different task names", names)
    for index, task in enumerate(config.tasks):
        key = f"tasks.{index}"
        if not task.name.isidentifier():
            _fail(
                source,
                f"{key}.name",
                "a Python identifier (it names an output)",
                task.name,
            )
        _one_of(source, f"{key}.kind", task.kind, TASK_KINDS)
        if task.kind == "multiclass":
            _at_least(source, f"{key}.num_classes", task.num_classes, 2)
        _at_least(source, f"{key}.weight", task.weight, 0.0)


def _validate_labels(config, source):
    data = config.data
    _one_of(source, "data.missing_labels", data.missing_labels, MISSING_LABELS)
    for task_name, fraction in data.label_fraction.items():
        key = f"data.label_fraction.{task_name}"
        if task_name not in config.task_names:
            raise ValueError(
                f"{source}: `data.label_fraction` names no task {task_name!r}. "
                f"Expected one of {config.task_names}. Received: {key}={fraction!r}"
            )
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            _fail(source, key, "a number in (0, 1]", fraction)
        if not 0.0 < fraction <= 1.0:
            _fail(source, key, "in (0, 1]", fraction)
    for split in data.label_fraction_splits:
        _one_of(source, "data.label_fraction_splits", split, SPLITS)
    for index, task in enumerate(config.tasks):
        key = f"tasks.{index}.class_weight"
        weights = task.class_weight
        if isinstance(weights, str):
            if weights not in ("", "balanced"):
                _fail(source, key, "'balanced' or a table of class -> weight", weights)
        elif isinstance(weights, dict):
            for label, weight in weights.items():
                if isinstance(weight, bool) or not isinstance(weight, int | float):
                    _fail(source, f"{key}.{label}", "a number >= 0", weight)
                _at_least(source, f"{key}.{label}", weight, 0.0)
        else:
            _fail(source, key, "'balanced' or a table of class -> weight", weights)
        if weights and task.kind == "regression":
            _fail(
                source, key, "empty for a regression task (it has no classes)", weights
            )
        if task.sample_weight_column and config.data.source not in ("csv", "images"):
            _fail(
                source,
                f"tasks.{index}.sample_weight_column",
                "empty unless data.source is 'csv' or 'images' (a column of the "
                "CSV file)",
                task.sample_weight_column,
            )


def _validate_model(model, source):
    _validate_trunk(model, source)
    _one_of(source, "model.head2_input", model.head2_input, HEAD2_INPUTS)
    keys = ("width", "depth", "head_units", "head_depth", "experts", "expert_units")
    for key in (*keys, "ple_levels"):
        _at_least(source, f"model.{key}", getattr(model, key), 1)
    _at_least(source, "model.task_experts", model.task_experts, 0)
    _at_least(source, "model.aitm_calibration", model.aitm_calibration, 0.0)
    if not 0.0 <= model.dropout < 1.0:
        _fail(source, "model.dropout", "in [0, 1)", model.dropout)


def _validate_trunk(model, source):
    _one_of(source, "model.image_range", model.image_range, IMAGE_RANGES)
    if not model.trunk.startswith(("keras.applications.", "keras_hub:")):
        _one_of(source, "model.trunk", model.trunk, (*TRUNKS, *BACKBONE_TRUNKS))
        if model.trunk_weights not in ("pretrained", "none"):
            _fail(
                source,
                "model.trunk_weights",
                f"'pretrained' (the default) for model.trunk={model.trunk!r}: "
                "weights are loaded into keras.applications.<Name> and "
                "keras_hub:<preset> trunks only",
                model.trunk_weights,
            )
        return
    name = model.trunk.split(":", 1)[1] if ":" in model.trunk else ""
    if model.trunk.startswith("keras.applications."):
        # Only the form here (this package imports no Keras): whether Keras
        # has the application is checked when the model is built.
        name = model.trunk.removeprefix("keras.applications.")
        if not (name.isidentifier() and name[:1].isupper()):
            _fail(
                source,
                "model.trunk",
                "keras.applications.<Name>, <Name> an application's class "
                "name such as MobileNetV3Small or ResNet50",
                model.trunk,
            )
    if not name:
        _fail(source, "model.trunk", "keras_hub:<preset name or directory>", "")
    if not model.trunk_weights:
        _fail(
            source,
            "model.trunk_weights",
            "'pretrained', 'imagenet', 'none' or a weights file path",
            model.trunk_weights,
        )


def _validate_link(config, source):
    """ESMM and AITM link two binary tasks (click -> conversion)."""
    link = config.model.head2_input
    if link not in ("esmm", "aitm"):
        return
    kinds = [task.kind for task in config.tasks]
    if kinds != ["binary", "binary"]:
        _fail(
            source,
            "model.head2_input",
            f"'features' or 'features+prediction' unless both tasks are binary "
            f"('{link}' links p(task 1) to p(task 2); tasks' kinds: {kinds})",
            link,
        )


def _validate_export(export, source, tasks):
    _one_of(source, "export.image_input", export.image_input, IMAGE_INPUTS)
    # one record per row, and one per row for each task's classify / regress
    # signature
    signatures = 1 + (tasks if export.classify_signatures else 0)
    most = 1000 // signatures
    if not 0 <= export.warmup_examples <= most:
        _fail(
            source,
            "export.warmup_examples",
            f"in [0, {most}] (TF Serving replays at most 1000 warm-up records"
            + (
                f"; each row is {signatures} records with "
                "export.classify_signatures = true"
                if signatures > 1
                else ""
            )
            + ")",
            export.warmup_examples,
        )


def _validate_train(train, source):
    _at_least(source, "train.epochs", train.epochs, 1)
    _at_least(source, "train.batch_size", train.batch_size, 1)
    _validate_steps_per_execution(train.steps_per_execution, source)
    _at_least(source, "train.replicas", train.replicas, 0)
    _at_least(source, "train.early_stopping_patience", train.early_stopping_patience, 0)
    _validate_freeze(train, source)
    _at_least(source, "train.backup_every_seconds", train.backup_every_seconds, 0.0)
    if not train.learning_rate > 0 or not math.isfinite(train.learning_rate):
        _fail(source, "train.learning_rate", "a number > 0", train.learning_rate)
    _one_of(source, "train.strategy", train.strategy, STRATEGIES)
    _one_of(source, "train.optimizer", train.optimizer, OPTIMIZERS)
    _one_of(source, "train.lr_schedule", train.lr_schedule, LR_SCHEDULES)
    _at_least(source, "train.lr_plateau_patience", train.lr_plateau_patience, 0)
    if not 0 < train.lr_plateau_factor < 1:
        _fail(
            source,
            "train.lr_plateau_factor",
            "a number in (0, 1)",
            train.lr_plateau_factor,
        )
    if train.strategy == "default" and train.replicas > 1:
        _fail(
            source,
            "train.replicas",
            "0 or 1 with train.strategy='default' (use 'mirrored' or 'auto' "
            "for more replicas)",
            train.replicas,
        )
    if train.replicas > 1 and train.batch_size % train.replicas:
        _fail(
            source,
            "train.batch_size",
            f"divisible by train.replicas={train.replicas} so that every "
            "replica gets an equal share of each batch",
            train.batch_size,
        )


def _validate_freeze(train, source):
    _at_least(source, "train.freeze_epochs", train.freeze_epochs, 0)
    if train.freeze_epochs and train.freeze_epochs >= train.epochs:
        _fail(
            source,
            "train.freeze_epochs",
            f"< train.epochs={train.epochs} (the epochs after them fine-tune the "
            "whole model; model.trunk_trainable=false freezes the Trunk throughout)",
            train.freeze_epochs,
        )
    rate = train.fine_tune_learning_rate
    if not rate > 0 or not math.isfinite(rate):
        _fail(source, "train.fine_tune_learning_rate", "a number > 0", rate)


def _validate_steps_per_execution(value, source):
    if value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(source, "train.steps_per_execution", "an integer >= 1 or 'auto'", value)


def _flatten_choices(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten_choices(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _validate_log_range(source, key, value, allow_empty):
    if allow_empty and not value:
        return
    if len(value) != 2 or not 0 < value[0] <= value[1]:
        _fail(source, key, "[min, max] with 0 < min <= max", value)


def _validate_tuning(tuning, source):
    _one_of(source, "tuning.tuner", tuning.tuner, TUNERS)
    _at_least(source, "tuning.max_trials", tuning.max_trials, 1)
    _at_least(source, "tuning.executions_per_trial", tuning.executions_per_trial, 1)
    _one_of(source, "tuning.selection", tuning.selection, ("one_se", "best"))
    if tuning.selection == "one_se" and tuning.executions_per_trial < 2:
        _fail(
            source,
            "tuning.executions_per_trial",
            "at least 2 with tuning.selection='one_se' (the rule needs the "
            "spread between executions; or set tuning.selection='best')",
            tuning.executions_per_trial,
        )
    _at_least(source, "tuning.hyperband_factor", tuning.hyperband_factor, 2)
    _at_least(source, "tuning.seed", tuning.seed, 0)
    _validate_log_range(source, "tuning.weight_ratio", tuning.weight_ratio, False)
    _validate_log_range(source, "tuning.learning_rate", tuning.learning_rate, True)
    # TOML dotted keys (`model.width = [...]`) and `--set
    # tuning.choices.model.width=[...]` both nest; keep one flat form.
    tuning.choices = _flatten_choices(tuning.choices)
    for key, values in tuning.choices.items():
        if not isinstance(values, list) or not values:
            _fail(source, f"tuning.choices.{key}", "a non-empty list of values", values)


def _validate_weighting(config, source):
    weighting = config.weighting
    _one_of(source, "weighting.method", weighting.method, weighting_methods.names())
    for method in weighting_methods.specs():
        for parameter, key in zip(method.parameters, method.config_keys(), strict=True):
            value = getattr(weighting, key)
            constraint = parameter.constraint
            if constraint is not None and not constraint.check(value):
                _fail(source, f"weighting.{key}", constraint.expected, value)
    weighting_methods.check_stop_gradient(
        weighting.method, config.model.stop_gradient, source
    )
