"""Run configuration: typed dataclasses read from TOML, presets and `--set`.

A run is described by one `Config`: where the data comes from, the two tasks in
head order, the model, training and export settings. It is read from a TOML
file or a named preset (`keras_mtl/presets/<name>.toml`), then overridden by
`section.key=value` strings, as `keras-mtl train --set train.epochs=1` does.
Unknown keys, wrong types and impossible values raise `ValueError` naming the
key, the file, what was expected and what was received.

Example:

```python
config = keras_mtl.load_config("shapes", overrides=["train.epochs=1"])
config.tasks[0].name  # "coarse"
```
"""

import dataclasses
import math
import os
import tomllib
import types
import typing
from pathlib import Path

PRESETS_DIR = Path(__file__).parent / "presets"

DATA_SOURCES = ("shapes", "tfds", "csv")
TASK_KINDS = ("multiclass", "binary", "regression")
TRUNKS = ("mlp", "cnn")
HEAD2_INPUTS = ("features", "features+prediction")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
OPTIMIZERS = ("adam", "adamw", "sgd")
TUNERS = ("random", "bayesian", "hyperband")
WEIGHTING_METHODS = (
    "static",
    "uncertainty",
    "dwa",
    "rlw",
    "gradnorm",
    "pcgrad",
    "famo",
)


@dataclasses.dataclass
class DataConfig:
    """Where examples come from and how they are split and batched."""

    source: str = "shapes"
    # TFDS: dataset name and builder config ("cifar100", "shapes/tiny").
    dataset: str = "shapes"
    data_dir: str = ""
    feature: str = "image"
    train_split: str = "train"
    test_split: str = "test"
    download: bool = True
    # CSV: one file, split into train / validation / test here.
    path: str = ""
    columns: list[str] = dataclasses.field(default_factory=list)
    exclude_columns: list[str] = dataclasses.field(default_factory=list)
    categorical_columns: list[str] = dataclasses.field(default_factory=list)
    missing_values: list[str] = dataclasses.field(default_factory=lambda: ["?", ""])
    test_fraction: float = 0.1
    validation_fraction: float = 0.1
    max_examples: int = 0
    seed: int = 0
    shuffle_buffer: int = 10_000
    cache: bool = True


@dataclasses.dataclass
class TaskConfig:
    """One task: a head, its label and its loss."""

    name: str = ""
    kind: str = "multiclass"
    num_classes: int = 0
    weight: float = 1.0
    label: str = ""
    positive: str = ""

    @property
    def label_key(self):
        """The feature or column that holds this task's label."""
        return self.label or self.name


@dataclasses.dataclass
class ModelConfig:
    """The trunk and the two heads."""

    trunk: str = "cnn"
    width: int = 32
    depth: int = 3
    head_units: int = 64
    head_depth: int = 1
    head2_input: str = "features"
    stop_gradient: bool = False
    dropout: float = 0.0


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, distribution and the run directory."""

    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    strategy: str = "auto"
    replicas: int = 0
    mixed_precision: bool = False
    jit_compile: bool = False
    steps_per_execution: int = 1
    shuffle: bool = True
    seed: int = 0
    early_stopping_patience: int = 0
    monitor: str = "val_loss"
    run_dir: str = "runs"


@dataclasses.dataclass
class WeightingConfig:
    """How the two task losses are combined (`keras_mtl/weighting/`).

    `static` uses the tasks' `weight` as compile-time `loss_weights`; `pcgrad`
    weights the task losses with them too; the other methods set or learn
    their own weights.
    """

    method: str = "static"
    uncertainty_learning_rate: float = 0.01
    dwa_temperature: float = 2.0
    rlw_seed: int = 0
    gradnorm_alpha: float = 1.5
    gradnorm_learning_rate: float = 0.01
    famo_learning_rate: float = 0.025
    famo_gamma: float = 0.01
    # Gradient norms and cosines on one validation batch after every epoch.
    diagnostics: bool = False


@dataclasses.dataclass
class ExportConfig:
    """Where SavedModels land: `<base_dir>/<name>/<version>/`."""

    base_dir: str = "saved_models"


@dataclasses.dataclass
class TuningConfig:
    """The search of `keras-mtl tune` (see `keras_mtl/tuning/`).

    Head 1's loss weight is fixed at 1 and `weight_ratio` (Head 2's weight
    over Head 1's) is sampled on a log scale: under Adam the overall scale of
    the weights hardly matters, their ratio does.
    """

    tuner: str = "random"
    max_trials: int = 10
    # "auto" (delta_m when single-task baselines are cached, else
    # unweighted_loss), "delta_m", "unweighted_loss" or "val_<task>_<metric>".
    objective: str = "auto"
    weight_ratio: list[float] = dataclasses.field(default_factory=lambda: [0.1, 10.0])
    # [min, max] on a log scale; empty: train.learning_rate in every trial.
    learning_rate: list[float] = dataclasses.field(default_factory=list)
    # Config key -> values to choose from: {"model.width" = [16, 32, 64]}.
    choices: dict = dataclasses.field(default_factory=dict)
    executions_per_trial: int = 1
    hyperband_factor: int = 3
    # The oracle's seed; 0 draws one at random, as Keras Tuner does.
    seed: int = 1
    # Default: <train.run_dir>/<name>/tuning.
    directory: str = ""


@dataclasses.dataclass
class Config:
    """A whole run. `tasks` holds exactly two tasks, in head order."""

    name: str = "shapes"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    tasks: list[TaskConfig] = dataclasses.field(default_factory=list)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    weighting: WeightingConfig = dataclasses.field(default_factory=WeightingConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    tuning: TuningConfig = dataclasses.field(default_factory=TuningConfig)

    @property
    def task_names(self):
        return [task.name for task in self.tasks]

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_toml(self):
        """The config as TOML text that `load_config` reads back unchanged."""
        return _dict_to_toml(self.to_dict())

    def replace(self, overrides):
        """A copy of this config with `section.key=value` overrides applied."""
        return config_from_dict(self.to_dict(), "<config>", overrides)


def list_presets():
    """Names of the presets shipped with keras-mtl."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.toml"))


def load_config(preset_or_path="shapes", overrides=()):
    """Reads a preset or a TOML file and applies `section.key=value` overrides.

    Args:
        preset_or_path: A preset name (`"shapes"`, `"adult"`, `"cifar100"`) or
            the path of a TOML file.
        overrides: Strings such as `"train.epochs=1"` or
            `"tasks.fine.weight=0.5"` (a task by name or by index). Values are
            read as TOML, so `data.source=csv` and `data.source="csv"` agree.

    Returns:
        A validated `Config`.

    Example:

    ```python
    config = load_config("adult", ["data.path=/data/adult.csv"])
    ```
    """
    path = Path(preset_or_path)
    if not path.suffix and not path.exists():
        path = PRESETS_DIR / f"{preset_or_path}.toml"
        if not path.exists():
            raise ValueError(
                f"Unknown preset {str(preset_or_path)!r}. Expected one of "
                f"{list_presets()} or the path of a TOML file. "
                f"Received: preset_or_path={preset_or_path!r}"
            )
    if not path.exists():
        raise ValueError(f"Config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None
    return config_from_dict(raw, str(path), overrides)


def config_from_dict(raw, source="<dict>", overrides=()):
    """Builds a validated `Config` from a dict such as `Config.to_dict()`."""
    raw = _copy_tree(raw)
    for override in overrides:
        _apply_override(raw, override)
    config = _build(Config, raw, "", source)
    _validate(config, source)
    return config


def _copy_tree(value):
    if isinstance(value, dict):
        return {key: _copy_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_tree(item) for item in value]
    return value


def _parse_value(text):
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(raw, override):
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(
            f"--set: expected KEY=VALUE such as train.epochs=3. Received: {override!r}"
        )
    value = _parse_value(text.strip())
    parts = key.split(".")
    node = raw
    if parts[0] == "tasks":
        tasks = raw.setdefault("tasks", [])
        if len(parts) != 3:
            raise ValueError(
                f"--set {key}: expected tasks.<name or index>.<key>, such as "
                f"tasks.0.weight=2. Received: {override!r}"
            )
        selector = parts[1]
        names = [task.get("name") for task in tasks]
        if selector.isdigit() and int(selector) < len(tasks):
            node = tasks[int(selector)]
        elif selector in names:
            node = tasks[names.index(selector)]
        else:
            raise ValueError(
                f"--set {key}: no task {selector!r}. Known tasks: {names} "
                f"(or their indices 0..{len(tasks) - 1})."
            )
        parts = parts[2:]
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set {key}: {part!r} is not a section.")
        node = child
    node[parts[-1]] = value


def _type_name(annotation):
    if typing.get_origin(annotation) is list:
        return f"a list of {typing.get_args(annotation)[0].__name__}"
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        dict: "a table",
    }.get(annotation, "a string")


def _check_type(value, annotation):
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_check_type(v, item) for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _build(cls, raw, prefix, source):
    if not isinstance(raw, dict):
        raise ValueError(
            f"{source}: [{prefix.rstrip('.')}] must be a table. Received: {raw!r}"
        )
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
        raise ValueError(
            f"Unknown config key {prefix + unknown[0]!r} in {source}. Known keys "
            f"in {where}: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        annotation = hints[name]
        key = prefix + name
        if dataclasses.is_dataclass(annotation):
            values[name] = _build(annotation, value, key + ".", source)
        elif typing.get_origin(annotation) is list and dataclasses.is_dataclass(
            typing.get_args(annotation)[0]
        ):
            if not isinstance(value, list):
                raise ValueError(
                    f"{source}: `{key}` must be an array of tables ([[{key}]]). "
                    f"Received: {value!r}"
                )
            item_cls = typing.get_args(annotation)[0]
            values[name] = [
                _build(item_cls, item, f"{key}.{index}.", source)
                for index, item in enumerate(value)
            ]
        else:
            if isinstance(annotation, types.GenericAlias | type) and not _check_type(
                value, annotation
            ):
                raise ValueError(
                    f"{source}: `{key}` must be {_type_name(annotation)}. "
                    f"Received: {key}={value!r}"
                )
            if annotation is float:
                value = float(value)
            values[name] = value
    return cls(**values)


def _fail(source, key, expected, value):
    raise ValueError(f"{source}: `{key}` must be {expected}. Received: {key}={value!r}")


def _one_of(source, key, value, choices):
    if value not in choices:
        _fail(source, key, f"one of {list(choices)}", value)


def _at_least(source, key, value, minimum):
    if not value >= minimum or (isinstance(value, float) and not math.isfinite(value)):
        _fail(source, key, f">= {minimum}", value)


def _validate(config, source):
    if (
        not config.name
        or not config.name.replace("-", "_").replace(".", "_").isidentifier()
    ):
        _fail(source, "name", "a name of letters, digits, '_', '-' or '.'", config.name)
    data, model, train = config.data, config.model, config.train
    _one_of(source, "data.source", data.source, DATA_SOURCES)
    if data.source == "csv" and not data.path:
        _fail(source, "data.path", "the path of a CSV file when data.source='csv'", "")
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

    _one_of(source, "model.trunk", model.trunk, TRUNKS)
    _one_of(source, "model.head2_input", model.head2_input, HEAD2_INPUTS)
    for key in ("width", "depth", "head_units", "head_depth"):
        _at_least(source, f"model.{key}", getattr(model, key), 1)
    if not 0.0 <= model.dropout < 1.0:
        _fail(source, "model.dropout", "in [0, 1)", model.dropout)

    _at_least(source, "train.epochs", train.epochs, 1)
    _at_least(source, "train.batch_size", train.batch_size, 1)
    _at_least(source, "train.steps_per_execution", train.steps_per_execution, 1)
    _at_least(source, "train.replicas", train.replicas, 0)
    _at_least(source, "train.early_stopping_patience", train.early_stopping_patience, 0)
    if not train.learning_rate > 0 or not math.isfinite(train.learning_rate):
        _fail(source, "train.learning_rate", "a number > 0", train.learning_rate)
    _one_of(source, "train.strategy", train.strategy, STRATEGIES)
    _one_of(source, "train.optimizer", train.optimizer, OPTIMIZERS)
    if train.strategy == "default" and train.replicas > 1:
        _fail(
            source,
            "train.replicas",
            "0 or 1 with train.strategy='default' (use 'mirrored' or 'auto' "
            "for more replicas)",
            train.replicas,
        )
    _validate_weighting(config, source)
    if train.replicas > 1 and train.batch_size % train.replicas:
        _fail(
            source,
            "train.batch_size",
            f"divisible by train.replicas={train.replicas} so that every "
            "replica gets an equal share of each batch",
            train.batch_size,
        )
    _validate_tuning(config.tuning, source)


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
    _one_of(source, "weighting.method", weighting.method, WEIGHTING_METHODS)
    for key in (
        "uncertainty_learning_rate",
        "dwa_temperature",
        "gradnorm_learning_rate",
        "famo_learning_rate",
    ):
        value = getattr(weighting, key)
        if not value > 0 or not math.isfinite(value):
            _fail(source, f"weighting.{key}", "a number > 0", value)
    _at_least(source, "weighting.gradnorm_alpha", weighting.gradnorm_alpha, 0.0)
    _at_least(source, "weighting.famo_gamma", weighting.famo_gamma, 0.0)
    if weighting.method in ("gradnorm", "pcgrad") and config.model.stop_gradient:
        _fail(
            source,
            "weighting.method",
            "a method other than 'gradnorm' or 'pcgrad' with "
            "model.stop_gradient=true (they compare both losses' gradients on "
            "Head 1 and the Trunk, and stop_gradient keeps Loss 2 out of them)",
            weighting.method,
        )


def resolve_path(path):
    """Expands `~` and `$VARS` in a path from a config."""
    return Path(os.path.expandvars(os.path.expanduser(path)))


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"Cannot write {value!r} as TOML")


def _dict_to_toml(tree):
    lines = []
    scalars = {k: v for k, v in tree.items() if not isinstance(v, dict | list)}
    scalars.update(
        {k: v for k, v in tree.items() if isinstance(v, list) and not _is_tables(v)}
    )
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in tree.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
        elif isinstance(value, list) and _is_tables(value):
            for table in value:
                lines.append(f"\n[[{key}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _is_tables(value):
    return bool(value) and all(isinstance(item, dict) for item in value)
