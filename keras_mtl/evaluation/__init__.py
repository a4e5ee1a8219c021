"""Evaluation: per-task reports, delta-m, single-task baselines, comparisons.

| module | what it holds |
|---|---|
| `report` | `evaluate`, `evaluation_report`, `evaluate_saved_model`: each task's loss and metrics on a split |
| `delta_m` | `delta_m` and friends: the mean relative change of each task's headline metric against a baseline |
| `baselines` | `train_baselines`, `load_baselines`: single-task models of each task, trained and cached per seed |
| `paired` | `paired_difference`: a paired t interval over seeds (scipy), and whether it excludes 0 |
| `comparison` | `compare_weightings`: one config trained once per loss-weighting method and seed, in one table |
"""

from keras_mtl.evaluation.architectures import (
    PairedRuns,
    correlation_experiment,
    esmm_experiment,
    paired_runs,
)
from keras_mtl.evaluation.baselines import Baselines, load_baselines, train_baselines
from keras_mtl.evaluation.comparison import WeightingComparison, compare_weightings
from keras_mtl.evaluation.delta_m import delta_m, delta_m_per_task, delta_m_summary
from keras_mtl.evaluation.paired import format_difference, paired_difference
from keras_mtl.evaluation.report import (
    EvaluationReport,
    evaluate,
    evaluate_predictions,
    evaluate_saved_model,
    evaluation_report,
)

__all__ = [
    "PairedRuns",
    "correlation_experiment",
    "esmm_experiment",
    "format_difference",
    "paired_difference",
    "paired_runs",
    "Baselines",
    "EvaluationReport",
    "WeightingComparison",
    "compare_weightings",
    "delta_m",
    "delta_m_per_task",
    "delta_m_summary",
    "evaluate",
    "evaluate_predictions",
    "evaluate_saved_model",
    "evaluation_report",
    "load_baselines",
    "train_baselines",
]
