"""`run_search`: a Keras Tuner search, its results table, plot and best model.

The search lives in `<tuning.directory>/<tuner>/` (default
`<train.run_dir>/<name>/tuning/<tuner>/`): Keras Tuner's project
(`oracle.json`, `trial_*/` with each trial's best-epoch weights) and:

| file | holds |
|---|---|
| `config.toml` | the search's config; resuming with another one is refused |
| `search.json` | the objective, the best trial, its config and the exported version |
| `results.csv`, `results.md` | one row per trial (`keras_mtl.tuning.results`) |
| `tradeoff.png` | Task 1's metric against Task 2's per trial (`keras_mtl.tuning.plot`) |
| `logs/` | TensorBoard logs with the HParams dashboard, per trial |

(`keras_mtl.tuning.project` writes these files; `keras_mtl.tuning.best_model`
reloads, exports and records the best trial's model.)

Rerunning the same search resumes it (Keras Tuner's `overwrite=False`): the
finished trials are kept and an interrupted one is run again.

Keras Tuner's distributed mode works as it does for any tuner: with
`KERASTUNER_TUNER_ID=chief`, `KERASTUNER_ORACLE_IP` and
`KERASTUNER_ORACLE_PORT` set, the chief serves the oracle and, once every
trial is done, writes the table and plot and exports the best model; workers
(any other `KERASTUNER_TUNER_ID`) run trials and exit.
"""

import logging
import os
import typing
from pathlib import Path

import keras
import keras_tuner as kt

from keras_mtl.compat.keras_tuner_oracle import propose_defaults_first
from keras_mtl.config import Config
from keras_mtl.data import load_datasets
from keras_mtl.distribute import make_strategy
from keras_mtl.evaluation.baselines import load_baselines, train_baselines
from keras_mtl.evaluation.report import EvaluationReport, evaluation_report
from keras_mtl.tuning.best_model import export_best, load_trial_model
from keras_mtl.tuning.executions import SeededExecutions
from keras_mtl.tuning.hypermodel import MultiTaskHyperModel, check_search_space
from keras_mtl.tuning.objectives import resolve_objective
from keras_mtl.tuning.project import (
    check_project,
    project_dir_for,
    read_search_file,
    record_search_start,
    write_results,
)
from keras_mtl.tuning.results import trial_rows
from keras_mtl.tuning.selection import select_trial

logger = logging.getLogger(__name__)


class SearchResult(typing.NamedTuple):
    """What `run_search` returns.

    On a distributed worker only `role`, `tuner`, `project_dir` and
    `objective` are set; the chief holds the rest.
    """

    role: str  # "single", "chief" or "worker"
    tuner: kt.Tuner
    project_dir: Path
    objective: str
    rows: list = []
    best_trial: str | None = None  # The chosen trial (`tuning.selection`).
    best_config: Config | None = None
    report: EvaluationReport | None = None
    export_path: Path | None = None
    files: dict = {}
    selection: dict = {}  # `keras_mtl.tuning.selection.select_trial`'s answer.


def distributed_role():
    """`"chief"`, `"worker"` or None, from Keras Tuner's environment variables."""
    if "KERASTUNER_ORACLE_IP" not in os.environ:
        return None
    for variable in ("KERASTUNER_ORACLE_PORT", "KERASTUNER_TUNER_ID"):
        if not os.environ.get(variable):
            raise ValueError(
                f"KERASTUNER_ORACLE_IP is set but {variable} is not: distributed "
                "tuning needs KERASTUNER_TUNER_ID (chief or a worker name), "
                "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT. "
                f"Received: {variable}={os.environ.get(variable)!r}"
            )
    return "chief" if "chief" in os.environ["KERASTUNER_TUNER_ID"] else "worker"


def make_tuner(config, hypermodel, objective, *, strategy=None, overwrite=False):
    """The Keras Tuner tuner that `config.tuning` names, over `hypermodel`.

    Args:
        config: A `keras_mtl.Config`.
        hypermodel: A `MultiTaskHyperModel`.
        objective: A `keras_tuner.Objective` (`resolve_objective`).
        strategy: The `distribution_strategy` of every trial.
        overwrite: Start over instead of resuming the project.

    Returns:
        A `keras_tuner.RandomSearch`, `BayesianOptimization` or `Hyperband`
        whose trials run their executions with seeds `train.seed + k` and
        record each one's objective (`SeededExecutions`), and whose oracle
        proposes the reference trial (the config's own values) first.
    """
    tuning = config.tuning
    project_dir = project_dir_for(config)
    common = {
        "hypermodel": hypermodel,
        "objective": objective,
        "seed": tuning.seed or None,
        "executions_per_trial": tuning.executions_per_trial,
        "distribution_strategy": strategy,
        "directory": str(project_dir.parent),
        "project_name": project_dir.name,
        "overwrite": overwrite,
    }
    if tuning.tuner == "hyperband":
        tuner = _Hyperband(
            max_epochs=config.train.epochs, factor=tuning.hyperband_factor, **common
        )
    elif tuning.tuner == "bayesian":
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise ImportError(
                "tuning.tuner='bayesian' needs scipy. Install it with "
                '`pip install "keras-mtl[tuning]"`.'
            ) from None
        tuner = _BayesianOptimization(max_trials=tuning.max_trials, **common)
    else:
        tuner = _RandomSearch(max_trials=tuning.max_trials, **common)
    if isinstance(tuner.oracle, kt.Oracle):  # Not a distributed worker's client.
        tuner.oracle.max_trials = tuning.max_trials
        propose_defaults_first(tuner.oracle)
    return tuner


# Keras Tuner's tuners, each execution of a trial seeded and recorded.
class _RandomSearch(SeededExecutions, kt.RandomSearch):
    pass


class _BayesianOptimization(SeededExecutions, kt.BayesianOptimization):
    pass


class _Hyperband(SeededExecutions, kt.Hyperband):
    pass


def _baselines_for(config, role, datasets, strategy, verbose):
    baselines = load_baselines(config)
    wanted = config.tuning.objective in ("delta_m", "val_delta_m")
    if baselines is not None or not wanted:
        return baselines
    if role is not None:
        raise ValueError(
            "tuning.objective='delta_m' needs the single-task baselines on every "
            "machine of a distributed search. Train them first with the same "
            "config (keras-mtl baseline ...) into a train.run_dir that all "
            "machines share."
        )
    logger.info("No cached single-task baselines for delta-m: training them first")
    return train_baselines(
        config, datasets=datasets, strategy=strategy, verbose=verbose
    )


class _PreparedSearch(typing.NamedTuple):
    """A search ready to run: the tuner and what its trials are measured by."""

    config: Config  # With the objective the search started with.
    objective: kt.Objective
    baselines: dict | None  # The single-task baselines' validation metrics.
    hypermodel: MultiTaskHyperModel
    tuner: kt.Tuner


def _datasets_with_validation(config, datasets, strategy):
    if datasets is None:
        datasets = load_datasets(config, replicas=strategy.num_replicas_in_sync)
    if datasets.validation is None:
        raise ValueError(
            "Tuning needs a validation split, and data.validation_fraction=0 leaves "
            "none. Set data.validation_fraction > 0. Received: "
            f"data.validation_fraction={config.data.validation_fraction}"
        )
    return datasets


def _prepare_search(config, role, datasets, strategy, overwrite, verbose):
    """Resolves the objective and baselines, builds the tuner, and (except on
    a distributed worker) records the search's start in its project."""
    project_dir = project_dir_for(config)
    saved_config = config
    saved_search = {} if overwrite else read_search_file(project_dir)
    if saved_search.get("objective") and config.tuning.objective == "auto":
        # Keep the objective the search started with, whatever is cached now.
        config = config.replace([f"tuning.objective={saved_search['objective']}"])
    baselines = _baselines_for(config, role, datasets, strategy, verbose)
    objective = resolve_objective(config, baselines is not None)
    validation_baselines = (
        None if baselines is None else baselines.metrics("validation")
    )
    hypermodel = MultiTaskHyperModel(
        config, datasets.features, baselines=validation_baselines
    )
    tuner = make_tuner(
        config, hypermodel, objective, strategy=strategy, overwrite=overwrite
    )
    if role != "worker":
        record_search_start(project_dir, saved_config, saved_search, objective.name)
    logger.info(
        "Tuning %s with %s: objective %s (%s), up to %d trials in %s",
        config.name,
        config.tuning.tuner,
        objective.name,
        objective.direction,
        config.tuning.max_trials,
        project_dir,
    )
    return _PreparedSearch(config, objective, validation_baselines, hypermodel, tuner)


def _trial_callbacks(config, objective, project_dir):
    """TensorBoard logs per trial, and early stopping on the objective."""
    callbacks = [keras.callbacks.TensorBoard(str(project_dir / "logs"))]
    if config.train.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=objective.name,
                mode=objective.direction,
                patience=config.train.early_stopping_patience,
            )
        )
    return callbacks


def run_search(
    config,
    *,
    datasets=None,
    strategy=None,
    overwrite=False,
    export=True,
    callbacks=(),
    verbose=1,
):
    """Tunes `config`'s loss weights (and `[tuning]` space) with Keras Tuner.

    Args:
        config: A `keras_mtl.Config`; `[tuning]` is the search, `[train]` the
            budget of every trial.
        datasets: A `keras_mtl.Datasets`; loaded from `config` by default.
        strategy: Every trial's `distribution_strategy`;
            `make_strategy(config.train)` by default, as in training.
        overwrite: Start over instead of resuming.
        export: Export the best model as a new SavedModel version.
        callbacks: More Keras callbacks for every trial.
        verbose: Keras Tuner's and `model.fit`'s verbosity.

    Returns:
        A `SearchResult`.

    Example:

    ```python
    config = keras_mtl.load_config("shapes", ["tuning.max_trials=8"])
    result = keras_mtl.run_search(config)
    result.best_config.tasks[1].weight, result.export_path
    ```
    """
    role = distributed_role()
    # Refuse a bad objective or search space before loading any data.
    resolve_objective(config, baselines_available=False)
    check_search_space(config)
    if role == "worker" and overwrite:
        logger.warning("A distributed worker never overwrites; the chief does.")
        overwrite = False
    project_dir = project_dir_for(config)
    check_project(project_dir, config, overwrite)
    strategy = strategy or make_strategy(config.train)
    datasets = _datasets_with_validation(config, datasets, strategy)
    search = _prepare_search(config, role, datasets, strategy, overwrite, verbose)
    search.tuner.search(
        datasets.train,
        validation_data=datasets.validation,
        epochs=search.config.train.epochs,
        callbacks=[
            *_trial_callbacks(search.config, search.objective, project_dir),
            *callbacks,
        ],
        verbose=verbose,
        shuffle=False,  # The pipeline shuffles.
    )
    if role == "worker":
        return SearchResult("worker", search.tuner, project_dir, search.objective.name)
    return _finish(search, datasets, role or "single", export)


def _finish(search, datasets, role, export):
    """The chief's (or a single machine's) end of a search: the choice by
    `tuning.selection`, the results files, then the chosen trial's model
    evaluated, exported and recorded."""
    config, objective, tuner = search.config, search.objective, search.tuner
    project_dir = project_dir_for(config)
    rows = trial_rows(tuner.oracle, config.tasks)
    selection = select_trial(rows, objective.direction, config.tuning.selection)
    chosen = selection["chosen"]
    for row in rows:
        row["chosen"] = row["trial"] == chosen
    logger.info("Selection: %s", selection["decision"])
    files = write_results(
        project_dir, rows, config, objective, search.baselines, selection
    )
    result = SearchResult(
        role,
        tuner,
        project_dir,
        objective.name,
        rows,
        chosen,
        files=files,
        selection=selection,
    )
    if chosen is None:
        logger.warning("No trial finished; nothing to export.")
        return result
    trial = tuner.oracle.get_trial(chosen)
    best_config = search.hypermodel.trial_config(trial.hyperparameters)
    model = load_trial_model(tuner, trial, project_dir)
    report = evaluation_report(model, datasets, best_config)
    export_path = export_best(
        project_dir,
        model,
        trial,
        best_config,
        datasets,
        report,
        objective=objective,
        export=export,
        selection=selection,
    )
    return result._replace(
        best_config=best_config, report=report, export_path=export_path
    )
