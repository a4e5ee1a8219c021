"""keras-mtl: multi-output Keras models, Input -> Trunk -> Head 1 -> Head 2.

The public API, written by hand; anything not exported here is private.
Nothing heavy is imported until it is used: `import keras_mtl` loads neither
TensorFlow nor serving, tuning or plots, and each name below imports its
module on first access (PEP 562), so the command line starts at once.

Loading a `.keras` file with `keras.models.load_model` needs keras-mtl's
layers registered: `import keras_mtl.models` first (training, building or
evaluating a model through `keras_mtl` does it for you).

Example:

```python
import keras_mtl

config = keras_mtl.load_config("shapes", overrides=["train.epochs=2"])
model, history, run_dir = keras_mtl.train(config)
datasets = keras_mtl.load_datasets(config)
metrics = keras_mtl.evaluate(model, datasets.test, config)
path = keras_mtl.export_run(model, config, datasets, metrics)
```
"""

import importlib

__version__ = "0.1.0"

# Module -> the public names it defines.
_EXPORTS = {
    "keras_mtl.config": (
        "Config",
        "config_from_dict",
        "DataConfig",
        "ExportConfig",
        "list_presets",
        "load_config",
        "ModelConfig",
        "TaskConfig",
        "TrainConfig",
        "TuningConfig",
        "WeightingConfig",
    ),
    "keras_mtl.data": (
        "Datasets",
        "load_datasets",
    ),
    "keras_mtl.diagnostics": (
        "diagnose_gradients",
        "GradientDiagnostics",
        "GradientReport",
    ),
    "keras_mtl.distribute": (
        "configure_cpu_replicas",
        "describe_strategy",
        "make_strategy",
    ),
    "keras_mtl.evaluation": (
        "Baselines",
        "compare_weightings",
        "delta_m",
        "delta_m_per_task",
        "delta_m_summary",
        "evaluate",
        "evaluate_saved_model",
        "evaluation_report",
        "EvaluationReport",
        "load_baselines",
        "paired_difference",
        "train_baselines",
        "WeightingComparison",
    ),
    "keras_mtl.export": (
        "export_run",
        "export_saved_model",
    ),
    "keras_mtl.models": (
        "build_model",
        "build_single_task_model",
        "compile_model",
        "AITMHead",
        "ConvTrunk",
        "EntireSpaceProduct",
        "MLPTrunk",
        "MMoETrunk",
        "MultiTaskModel",
        "PLETrunk",
        "serving_model",
        "TaskHead",
    ),
    "keras_mtl.multi_worker": ("MultiWorkerBackupAndRestore",),
    "keras_mtl.saved_model": (
        "list_versions",
        "LoadedModel",
        "read_metadata",
    ),
    "keras_mtl.tasks": ("MISSING_LABEL",),
    "keras_mtl.training": (
        "train",
        "TrainingDivergedError",
        "TrainResult",
    ),
    "keras_mtl.tuning": (
        "MultiTaskHyperModel",
        "run_search",
        "TaskObjectives",
    ),
    "keras_mtl.weighting": ("make_weighting",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
# Subpackages reachable as attributes, as after `import keras_mtl.serving`:
# `keras_mtl.serving.Client`, ... (only these two are public API).
_SUBPACKAGES = ("plots", "serving")
_MODULES = (
    *_SUBPACKAGES,
    "callbacks",
    "cli",
    "compat",
    "config",
    "data",
    "diagnostics",
    "distribute",
    "evaluation",
    "export",
    "models",
    "multi_worker",
    "run_directory",
    "saved_model",
    "tasks",
    "training",
    "tuning",
    "weighting",
)

__all__ = sorted([*_MODULE_OF, *_SUBPACKAGES])


def __getattr__(name):
    if name in _MODULES:
        return importlib.import_module(f"keras_mtl.{name}")
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'keras_mtl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value  # Later lookups skip __getattr__.
    return value


def __dir__():
    return sorted([*globals(), *__all__])
