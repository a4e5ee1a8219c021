"""The results table of a search: one row per trial, as CSV and Markdown.

Columns: `trial`, `status`, each task's loss weight (`weight_<task>`), the
other tuned hyperparameters, each task's validation headline metric
(`val_<task>_<metric>`, at the trial's best epoch), `val_unweighted_loss`,
`val_delta_m` where baselines exist, `objective` (the trial's score: the
mean over its executions), `objective_runs` (each execution's value),
`best_epoch`, `reference` (the trial with the config's own loss weights),
`pareto` (no other trial is at least as good on both tasks' validation
metrics and better on one) and `chosen` (the trial the search picked,
`keras_mtl.tuning.selection`).
"""

import csv
import io
import math

from keras_mtl import tasks as task_lib
from keras_mtl.compat.keras_tuner_oracle import default_values
from keras_mtl.markdown import table_lines
from keras_mtl.tuning.executions import execution_values

# Keras Tuner's bookkeeping hyperparameters (Hyperband) that are not choices.
_HIDDEN = {"tuner/trial_id", "tuner/bracket", "tuner/round", "tuner/initial_epoch"}


def task_metric_keys(tasks):
    """`[(task, "val_<task>_<metric>", direction)]` for each task's headline metric."""
    keys = []
    for task in tasks:
        metric = task_lib.headline_metric(task)
        keys.append(
            (task, f"val_{task.name}_{metric}", task_lib.metric_direction(metric))
        )
    return keys


def _better_or_equal(a, b, direction):
    return a >= b if direction == "higher" else a <= b


def _strictly_better(a, b, direction):
    return a > b if direction == "higher" else a < b


def pareto_front(rows, tasks):
    """The `trial` ids that no other row dominates on the tasks' headline metrics."""
    keys = task_metric_keys(tasks)
    scored = [
        row
        for row in rows
        if all(
            isinstance(row.get(key), float) and math.isfinite(row[key])
            for _, key, _ in keys
        )
    ]
    front = []
    for row in scored:
        dominated = any(
            all(_better_or_equal(other[k], row[k], d) for _, k, d in keys)
            and any(_strictly_better(other[k], row[k], d) for _, k, d in keys)
            for other in scored
            if other is not row
        )
        if not dominated:
            front.append(row["trial"])
    return front


def trial_rows(oracle, tasks, best_trial_id=None):
    """One dict per trial of `oracle`, in trial order (see the module table)."""
    names = [task.name for task in tasks]
    reference = default_values(oracle.hyperparameters)
    metric_keys = [key for _, key, _ in task_metric_keys(tasks)]
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        values = dict(trial.hyperparameters.values)
        row = {"trial": trial_id, "status": str(trial.status)}
        is_reference = all(values.get(k) == v for k, v in reference.items())
        ratio = values.pop("weight_ratio", None)
        row[f"weight_{names[0]}"] = 1.0
        row[f"weight_{names[1]}"] = None if ratio is None else float(ratio)
        for name, value in values.items():
            if name not in _HIDDEN:
                row[name.removeprefix("tuner/")] = value
        for key in [*metric_keys, "val_unweighted_loss", "val_delta_m"]:
            if trial.metrics.exists(key):
                row[key] = float(trial.metrics.get_last_value(key))
        row["objective"] = None if trial.score is None else float(trial.score)
        metrics = {
            name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics
        }
        row["objective_runs"] = execution_values(metrics, oracle.objective.name)
        row["best_epoch"] = trial.best_step
        row["reference"] = is_reference
        rows.append(row)
    front = set(pareto_front(rows, tasks))
    for row in rows:
        row["pareto"] = row["trial"] in front
        row["chosen"] = row["trial"] == best_trial_id
    return rows


def _columns(rows):
    columns = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    return columns


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_cell(item) for item in value)
    return str(value)


def rows_to_csv(rows):
    """The rows as CSV text (full precision)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def rows_to_markdown(rows, title=""):
    """The rows as a Markdown table (4 significant digits)."""
    columns = _columns(rows)
    lines = [f"{title}\n"] if title else []
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    return "\n".join(lines + table_lines(columns, cells)) + "\n"
