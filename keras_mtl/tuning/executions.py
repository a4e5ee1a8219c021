"""Executions of a trial: one seed each, and each one's objective kept.

Keras Tuner runs a trial `executions_per_trial` times and keeps only the
mean of the executions' best-epoch metrics. The one-standard-error rule
(`keras_mtl.tuning.selection`) needs the spread too, so `SeededExecutions`
runs the executions one by one and records execution k's best-epoch
objective as the metric `<objective>_execution_<k>` beside the mean (Keras
Tuner averages each metric over the executions that report it, and only
execution k reports this one). Execution k of every trial starts from the
initialisation `train.seed + k`: executions of one trial differ, and the same
execution of two trials starts alike (`MultiTaskHyperModel.execution`).

Each execution saves its own best epoch, so a trial's checkpoint holds its
last execution's best weights (Keras Tuner would keep the best of all
executions, whose validation score is the luckiest draw).
"""

import re

_EXECUTION = re.compile(r"^(?P<objective>.+)_execution_(?P<index>\d+)$")


def execution_key(objective, execution):
    """The metric that holds execution `execution`'s objective value."""
    return f"{objective}_execution_{execution}"


def execution_values(metrics, objective):
    """The per-execution values of `objective` in a trial's `metrics` dict."""
    values = {}
    for name, value in metrics.items():
        match = _EXECUTION.match(name)
        if match and match["objective"] == objective and value is not None:
            values[int(match["index"])] = float(value)
    return [values[index] for index in sorted(values)]


class SeededExecutions:
    """A mixin for a Keras Tuner `Tuner` (before it in the bases).

    `run_trial` runs the trial's executions one at a time, tells the
    hypermodel which one it builds (`hypermodel.execution`, read by
    `MultiTaskHyperModel.build` for the seed), and copies each execution's
    objective into `<objective>_execution_<k>`.

    Example:

    ```python
    class Search(SeededExecutions, keras_tuner.RandomSearch):
        pass
    ```
    """

    def run_trial(self, trial, *args, **kwargs):
        executions = self.executions_per_trial
        objective = self.oracle.objective.name
        results = []
        self.executions_per_trial = 1
        try:
            for execution in range(executions):
                self.hypermodel.execution = execution
                for history in super().run_trial(trial, *args, **kwargs):
                    logs = getattr(history, "history", None)
                    if logs and objective in logs:
                        logs[execution_key(objective, execution)] = list(
                            logs[objective]
                        )
                    results.append(history)
        finally:
            self.executions_per_trial = executions
            self.hypermodel.execution = 0
        return results
