"""The run's typed config: one dataclass per TOML table, `Config` for all.

`WeightingConfig`'s fields come from the registered weighting methods
(`keras_mtl.config.weighting_methods`).
"""

import dataclasses

from keras_mtl.config import weighting_methods
from keras_mtl.config.writing import dict_to_toml


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
    # Images (data.source = "images"): a CSV (`path`) with an image path
    # column, paths relative to `image_dir` (default: the CSV's folder), each
    # image decoded (JPEG or PNG, 3 channels) and resized to [height, width].
    image_column: str = "image"
    image_dir: str = ""
    image_size: list[int] = dataclasses.field(default_factory=lambda: [224, 224])
    # Skip rows whose image is missing or unreadable (counted in the log)
    # instead of stopping with the first one.
    skip_bad_images: bool = False
    # Image augmentation layers, active in training only ("flip", "crop", ...;
    # keras_mtl.models.augmentation); any image source.
    augment: list[str] = dataclasses.field(default_factory=list)
    # Rows missing one task's label: "mask" keeps them for the other task
    # (the task's loss skips them), "drop" drops them.
    missing_labels: str = "mask"
    # Task name -> fraction of its training labels kept (a seeded draw hides
    # the rest): {income = 0.05}.
    label_fraction: dict = dataclasses.field(default_factory=dict)
    # The splits label_fraction applies to.
    label_fraction_splits: list[str] = dataclasses.field(
        default_factory=lambda: ["train"]
    )


@dataclasses.dataclass
class TaskConfig:
    """One task: a head, its label and its loss."""

    name: str = ""
    kind: str = "multiclass"
    num_classes: int = 0
    weight: float = 1.0
    label: str = ""
    positive: str = ""
    # Standardise a regression target for its loss (predictions stay in its units).
    normalize: bool = True
    # A TFDS label value that means "no label". Class labels: it and any
    # negative value; float labels: it (when not -1) and NaN.
    missing_label: int = -1
    # CSV: a column of per-row weights for this task's loss.
    sample_weight_column: str = ""
    # "balanced", or a table of class -> weight: {">50K" = 3.0}.
    class_weight: str | dict = ""

    @property
    def label_key(self):
        """The feature or column that holds this task's label."""
        return self.label or self.name


@dataclasses.dataclass
class ModelConfig:
    """The trunk and the two heads."""

    # "cnn", "mlp", "mmoe", "ple", "keras.applications.<Name>" or
    # "keras_hub:<preset>" (keras_mtl.models.backbones).
    trunk: str = "cnn"
    # A backbone's weights: "pretrained" (ImageNet / the preset's), "imagenet",
    # "none" (random) or the path of a weights file.
    trunk_weights: str = "pretrained"
    # False freezes the Trunk for the whole run (train.freeze_epochs: the first N).
    trunk_trainable: bool = True
    # The pixel range the model is fed: "0-255" or "0-1".
    image_range: str = "0-255"
    width: int = 32
    depth: int = 3
    head_units: int = 64
    head_depth: int = 1
    head2_input: str = "features"
    stop_gradient: bool = False
    dropout: float = 0.0
    # Gated-expert trunks (`trunk = "mmoe"` or `"ple"`): experts (PLE: shared
    # experts per level), each `expert_units` wide and `depth` layers deep.
    experts: int = 4
    expert_units: int = 16
    # PLE: extraction levels (1 is CGC) and task-specific experts per task.
    ple_levels: int = 2
    task_experts: int = 1
    # `head2_input = "aitm"`: weight of the label constraint max(p2 - p1, 0).
    aitm_calibration: float = 0.6


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
    # Training steps per compiled call: an integer, or "auto"
    # (keras_mtl.steps_per_execution).
    steps_per_execution: int | str = "auto"
    # Two phases: the heads alone (Trunk frozen) for freeze_epochs epochs, then
    # the whole model at fine_tune_learning_rate (keras_mtl.fine_tuning).
    freeze_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    shuffle: bool = True
    seed: int = 0
    early_stopping_patience: int = 0
    monitor: str = "val_loss"
    # The learning rate over epochs (keras_mtl.lr_schedule): "none",
    # "cosine" (Keras' CosineDecay over train.epochs) or "plateau" (Keras'
    # ReduceLROnPlateau on train.monitor).
    lr_schedule: str = "none"
    lr_plateau_patience: int = 2
    lr_plateau_factor: float = 0.5
    run_dir: str = "runs"
    # Write the backup and the best model at most this often (and at the end,
    # and when stopped); 0: after every epoch.
    backup_every_seconds: float = 60.0


class WeightingConfig:
    """How the two task losses are combined (`keras_mtl/weighting/`).

    `static` uses the tasks' `weight` as compile-time `loss_weights`; `pcgrad`
    weights the task losses with them too; the other methods set or learn
    their own weights.

    The fields are `method`, one `<method>_<parameter>` per parameter of each
    method in `keras_mtl.config.weighting_methods` (`dwa_temperature`, ...),
    and `diagnostics`: gradient norms and cosines on one validation batch
    after every epoch.
    """


def _weighting_fields():
    fields = {"method": (str, "static")}
    for method in weighting_methods.specs():
        for parameter, key in zip(method.parameters, method.config_keys(), strict=True):
            fields[key] = (type(parameter.default), parameter.default)
    fields["diagnostics"] = (bool, False)
    return fields


_DATACLASS_ATTRIBUTES = (
    "__init__",
    "__repr__",
    "__eq__",
    "__hash__",
    "__match_args__",
    "__replace__",
    "__dataclass_params__",
)


def _define_weighting_fields():
    """(Re)makes `WeightingConfig` a dataclass of the registered parameters.

    It runs at import and after every `register`: the class is redefined in
    place, so that `keras_mtl.WeightingConfig` and every other reference stay
    the class that `load_config` builds.
    """
    cls = WeightingConfig
    for name in (
        *_DATACLASS_ATTRIBUTES,
        *getattr(cls, "__dataclass_fields__", {}),
        "__dataclass_fields__",
    ):
        if name in cls.__dict__:
            delattr(cls, name)
    fields = _weighting_fields()
    cls.__annotations__ = {name: kind for name, (kind, _) in fields.items()}
    for name, (_, default) in fields.items():
        setattr(cls, name, default)
    dataclasses.dataclass(cls)


_define_weighting_fields()
weighting_methods.on_change(_define_weighting_fields)


@dataclasses.dataclass
class ExportConfig:
    """Where SavedModels land: `<base_dir>/<name>/<version>/`."""

    base_dir: str = "saved_models"
    # Rows of the test split written as TF Serving warm-up requests (one
    # request per row, assets.extra/tf_serving_warmup_requests); 0 for none.
    warmup_examples: int = 4
    # "bytes": `serving_default` takes encoded JPEG/PNG strings (`image_bytes`)
    # and decodes them in the graph; the float signature stays as `serve`.
    image_input: str = "float"
    # true: one `classify_<task>` / `regress_<task>` signature per task over
    # serialized tf.Examples, for TF Serving's Classify, Regress and
    # MultiInference APIs (keras_mtl.export_classify).
    classify_signatures: bool = False


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
    # Each trial is trained this many times (seeds train.seed + k) and its
    # objective is the mean; the spread feeds the one-standard-error rule.
    executions_per_trial: int = 2
    # "one_se": keep the reference trial (the config's own loss weights)
    # unless a candidate beats it by more than one standard error; "best":
    # the best mean objective, as Keras Tuner picks.
    selection: str = "one_se"
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
        return dict_to_toml(self.to_dict())

    def replace(self, overrides):
        """A copy of this config with `section.key=value` overrides applied."""
        from keras_mtl.config.loading import config_from_dict

        return config_from_dict(self.to_dict(), "<config>", overrides)
