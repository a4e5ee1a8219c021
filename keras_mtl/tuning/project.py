"""A search's project directory and the files keras-mtl keeps in it.

Next to Keras Tuner's own project files, `<tuning.directory>/<tuner>/` holds
`config.toml` (the config the search started with; resuming with another is
refused), `search.json` (the objective, later the best trial and its export)
and, once the search is done, `results.csv`, `results.md` and `tradeoff.png`.
"""

import json
import logging
import tomllib

from keras_mtl.config import config_from_dict, resolve_path
from keras_mtl.training import run_dir_for
from keras_mtl.tuning.results import rows_to_csv, rows_to_markdown
from keras_mtl.tuning.selection import decision_markdown

logger = logging.getLogger(__name__)


def project_dir_for(config):
    """`<tuning.directory or <run_dir>/<name>/tuning>/<tuner>`."""
    base = config.tuning.directory
    base = resolve_path(base) if base else run_dir_for(config) / "tuning"
    return base / config.tuning.tuner


def _comparable(config):
    settings = config.to_dict()
    settings["tuning"].pop("max_trials")  # Raising it extends a search.
    return settings


def check_project(project_dir, config, overwrite):
    """Refuses to resume a search in `project_dir` that another config started."""
    saved = project_dir / "config.toml"
    if overwrite or not saved.exists():
        return
    previous = config_from_dict(tomllib.loads(saved.read_text()), str(saved))
    if _comparable(previous) != _comparable(config):
        raise ValueError(
            f"{project_dir} holds a search with a different config ({saved}). "
            "Resume it with that config, start over with --overwrite, or search "
            "elsewhere with --set tuning.directory=DIR."
        )


def read_search_file(project_dir):
    """`search.json` of the project as a dict; {} before the search started."""
    path = project_dir / "search.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record_search_start(project_dir, config, saved_search, objective_name):
    """Writes `config.toml` and the objective into `search.json`."""
    project_dir.mkdir(parents=True, exist_ok=True)
    (project_dir / "config.toml").write_text(config.to_toml())
    search = {**saved_search, "objective": objective_name}
    (project_dir / "search.json").write_text(json.dumps(search, indent=1))


def write_results(project_dir, rows, config, objective, baselines, selection=None):
    """Writes the results table (CSV and Markdown) and the trade-off plot.

    Args:
        project_dir: The search's project directory.
        rows: `trial_rows(...)` of the search.
        config: The search's `keras_mtl.Config`.
        objective: The search's `keras_tuner.Objective`.
        baselines: The single-task baselines' validation metrics, or None.
        selection: `keras_mtl.tuning.selection.select_trial`'s answer, shown
            above the table in `results.md`.

    Returns:
        `{"csv": path, "markdown": path, "plot": path}`, without `"plot"` when
        matplotlib is missing.
    """
    from keras_mtl.tuning.plot import plot_tradeoff

    files = {
        "csv": project_dir / "results.csv",
        "markdown": project_dir / "results.md",
        "plot": project_dir / "tradeoff.png",
    }
    files["csv"].write_text(rows_to_csv(rows))
    title = (
        f"{config.name}: {config.tuning.tuner} search, objective {objective.name} "
        f"({objective.direction})"
    )
    heading = f"# {title}"
    if selection:
        heading += "\n\n" + decision_markdown(selection, objective.name)
        heading += (
            "\nEvery trial (Pareto: non-dominated on both tasks' validation metrics):"
        )
    files["markdown"].write_text(rows_to_markdown(rows, heading))
    try:
        plot_tradeoff(
            rows, config.tasks, files["plot"], baselines=baselines, title=title
        )
    except ImportError as error:
        logger.warning("No trade-off plot: %s", error)
        files.pop("plot")
    return files
