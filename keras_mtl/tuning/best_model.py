"""The chosen trial's model: reloaded from its weights, exported, recorded.

The export is a new SavedModel version of the run (`export_run`), made once:
rerunning a finished search whose best trial did not change keeps the version
that `search.json` names.
"""

import json
import warnings
from pathlib import Path

from keras_mtl.export import export_run
from keras_mtl.tuning.project import read_search_file


def load_trial_model(tuner, trial, project_dir):
    """The model of `trial`, with the weights of its (last execution's) best epoch.

    Raises:
        RuntimeError: The trial's weights cannot be read, as when the machines
            of a distributed search do not share `tuning.directory`.
    """
    try:
        with warnings.catch_warnings():
            # Keras Tuner reloads weights into a model whose optimizer is not
            # built yet; the optimizer state is not needed to export.
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            return tuner.load_model(trial)
    except OSError as error:
        raise RuntimeError(
            f"Cannot load trial {trial.trial_id}'s weights from {project_dir}: "
            f"{error}. In a distributed search, tuning.directory must be one "
            "directory that every machine sees (NFS or another shared filesystem)."
        ) from None


def export_best(
    project_dir,
    model,
    trial,
    best_config,
    datasets,
    report,
    *,
    objective,
    export,
    selection=None,
):
    """Exports the best model unless it already was; records it in `search.json`.

    Args:
        project_dir: The search's project directory.
        model: The best trial's model (`load_best_model`).
        trial: The best `keras_tuner.Trial`.
        best_config: The config of that trial.
        datasets: The `keras_mtl.Datasets` of the search.
        report: The model's `EvaluationReport`.
        objective: The search's `keras_tuner.Objective`.
        export: Whether to export at all.
        selection: `select_trial`'s answer, recorded as `"selection"`.

    Returns:
        The SavedModel version directory, or None without `export`.
    """
    search = read_search_file(project_dir)
    export_path = None
    if export:
        previous = search.get("export")
        if (
            search.get("best_trial") == trial.trial_id
            and previous
            and Path(previous).is_dir()
        ):
            export_path = Path(previous)  # Resumed with nothing new: keep it.
        else:
            export_path = export_run(model, best_config, datasets, report.test)
    search.update(
        {
            "objective": objective.name,
            "best_trial": trial.trial_id,
            "best_score": trial.score,
            "selection": selection,
            "best_config": best_config.to_dict(),
            "test": report.test,
            "export": None if export_path is None else str(export_path),
        }
    )
    (project_dir / "search.json").write_text(json.dumps(search, indent=1, default=str))
    return export_path
