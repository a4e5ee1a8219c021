"""Loss-weight tuning with Keras Tuner against objectives the weights cannot game.

`run_search` is the whole `keras-mtl tune`; the parts are usable alone:
`MultiTaskHyperModel` (the search space over `build_model`), `TaskObjectives`
and `resolve_objective` (the objectives), `trial_rows` / `pareto_front` (the
results table), `select_trial` (the one-standard-error pick against the
reference trial) and `plot_tradeoff` (the trade-off plot, in `plot.py`, which
needs matplotlib).
"""

from keras_mtl.tuning.hypermodel import MultiTaskHyperModel, apply_values
from keras_mtl.tuning.objectives import TaskObjectives, resolve_objective
from keras_mtl.tuning.results import pareto_front, trial_rows
from keras_mtl.tuning.search import (
    SearchResult,
    distributed_role,
    make_tuner,
    project_dir_for,
    run_search,
)
from keras_mtl.tuning.selection import select_trial

__all__ = [
    "MultiTaskHyperModel",
    "SearchResult",
    "TaskObjectives",
    "apply_values",
    "distributed_role",
    "make_tuner",
    "pareto_front",
    "project_dir_for",
    "resolve_objective",
    "run_search",
    "select_trial",
    "trial_rows",
]
