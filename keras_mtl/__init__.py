"""keras-mtl: multi-output Keras models, Input -> Trunk -> Head 1 -> Head 2.

The public API, written by hand; anything not exported here is private.

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

from keras_mtl import (
    plots,  # keras_mtl.plots.plot_history, ... (drawing needs matplotlib)
    serving,  # keras_mtl.serving.Client, ModelServer, ...
)
from keras_mtl.baselines import Baselines, load_baselines, train_baselines
from keras_mtl.comparison import WeightingComparison, compare_weightings
from keras_mtl.config import (
    Config,
    DataConfig,
    ExportConfig,
    ModelConfig,
    TaskConfig,
    TrainConfig,
    TuningConfig,
    WeightingConfig,
    config_from_dict,
    list_presets,
    load_config,
)
from keras_mtl.data import Datasets, load_datasets
from keras_mtl.delta_m import delta_m, delta_m_per_task, delta_m_summary
from keras_mtl.diagnostics import (
    GradientDiagnostics,
    GradientReport,
    diagnose_gradients,
)
from keras_mtl.distribute import (
    configure_cpu_replicas,
    describe_strategy,
    make_strategy,
)
from keras_mtl.evaluation import (
    EvaluationReport,
    evaluate,
    evaluate_saved_model,
    evaluation_report,
)
from keras_mtl.export import export_run, export_saved_model
from keras_mtl.models import (
    ConvTrunk,
    MLPTrunk,
    MultiTaskModel,
    TaskHead,
    build_model,
    build_single_task_model,
    compile_model,
)
from keras_mtl.multi_worker import MultiWorkerBackupAndRestore
from keras_mtl.saved_model import LoadedModel, list_versions, read_metadata
from keras_mtl.training import TrainingDivergedError, TrainResult, train
from keras_mtl.tuning import MultiTaskHyperModel, TaskObjectives, run_search
from keras_mtl.weighting import make_weighting

__version__ = "0.1.0"

__all__ = [
    "Baselines",
    "Config",
    "ConvTrunk",
    "DataConfig",
    "Datasets",
    "EvaluationReport",
    "ExportConfig",
    "GradientDiagnostics",
    "GradientReport",
    "LoadedModel",
    "MLPTrunk",
    "ModelConfig",
    "MultiTaskHyperModel",
    "MultiTaskModel",
    "MultiWorkerBackupAndRestore",
    "TaskConfig",
    "TaskHead",
    "TaskObjectives",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "TuningConfig",
    "WeightingComparison",
    "WeightingConfig",
    "build_model",
    "build_single_task_model",
    "compare_weightings",
    "compile_model",
    "config_from_dict",
    "configure_cpu_replicas",
    "delta_m",
    "delta_m_per_task",
    "delta_m_summary",
    "describe_strategy",
    "diagnose_gradients",
    "evaluate",
    "evaluate_saved_model",
    "evaluation_report",
    "export_run",
    "export_saved_model",
    "list_presets",
    "list_versions",
    "load_baselines",
    "load_config",
    "load_datasets",
    "make_strategy",
    "make_weighting",
    "plots",
    "read_metadata",
    "run_search",
    "serving",
    "train",
    "train_baselines",
]
