"""Delta-m: a multi-task model against its single-task baselines, in one number.

keras-mtl uses one convention everywhere (reports, `keras-mtl baseline`, the
`delta_m` tuning objective, the benchmarks):

    delta_m = 100 / T * sum over tasks t of s_t * (M_t - B_t) / B_t

- `M_t`: the multi-task model's headline metric on task t
  (`keras_mtl.tasks.headline_metric`: accuracy, AUC or MAE);
- `B_t`: the single-task baseline's value of the same metric on the same
  split (the mean over its seeds when several were trained);
- `s_t = -1` when the metric is higher-is-better (accuracy, AUC) and `+1`
  when it is lower-is-better (MAE), so each term is negative when the
  multi-task model does better on that task.

**Negative delta-m means the multi-task model is better on average**, in
percent: -2.0 is a 2 % relative gain per task. This is the sign of Liu et al.
2021 (CAGrad) and Navon et al. 2022 (Nash-MTL), whose tables give "delta-m %,
lower is better"; Maninis et al. 2019 define the same quantity with the
opposite sign (higher is better there).

With several seeds, each multi-task run is compared with the mean baseline and
`delta_m_summary` reports the mean and the sample standard deviation of the
per-run values.

Example:

```python
multi = {"coarse": {"accuracy": 0.90}, "fine": {"accuracy": 0.60}}
single = {"coarse": {"accuracy": 0.88}, "fine": {"accuracy": 0.62}}
keras_mtl.delta_m(multi, single, config.tasks)  # +0.48: -2.27 and +3.23
```
"""

import math
import statistics

from keras_mtl import tasks as task_lib


def _task_list(tasks):
    return list(getattr(tasks, "tasks", tasks))


def _value(metrics, task, metric, what):
    try:
        value = float(metrics[task.name][metric])
    except KeyError:
        raise ValueError(
            f"delta-m needs the {metric!r} of task {task.name!r} in the {what} "
            f"metrics. Received: {what}={metrics!r}"
        ) from None
    if not math.isfinite(value):
        raise ValueError(
            f"The {what} {metric!r} of task {task.name!r} is {value}; delta-m needs "
            f"finite metrics. Received: {what}={metrics!r}"
        )
    return value


def delta_m_per_task(multi, baselines, tasks):
    """Each task's signed relative change in percent (its term in delta-m).

    Args:
        multi: The multi-task model's metrics, `{task: {metric: value}}`
            (as `keras_mtl.evaluate` returns them).
        baselines: The single-task baselines' metrics, same structure.
        tasks: The `TaskConfig`s (`config.tasks`) or the `Config`.

    Returns:
        `{task: percent}`; negative where the multi-task model is better.
    """
    terms = {}
    for task in _task_list(tasks):
        metric = task_lib.headline_metric(task)
        sign = -1.0 if task_lib.metric_direction(metric) == "higher" else 1.0
        value = _value(multi, task, metric, "multi-task")
        reference = _value(baselines, task, metric, "baseline")
        if reference == 0:
            raise ValueError(
                f"The baseline {metric!r} of task {task.name!r} is 0, so the "
                "relative change is undefined. Retrain the baseline with a longer "
                f"budget or more data. Received: baselines={baselines!r}"
            )
        terms[task.name] = 100.0 * sign * (value - reference) / abs(reference)
    return terms


def delta_m(multi, baselines, tasks):
    """Delta-m in percent: negative means the multi-task model is better.

    Args:
        multi: The multi-task model's metrics, `{task: {metric: value}}`.
        baselines: The single-task baselines' metrics, same structure.
        tasks: The `TaskConfig`s (`config.tasks`) or the `Config`.

    Returns:
        A float: the mean over tasks of `delta_m_per_task`.

    Example:

    ```python
    keras_mtl.delta_m(report.test, baselines.metrics("test"), config)
    ```
    """
    terms = delta_m_per_task(multi, baselines, tasks)
    return sum(terms.values()) / len(terms)


def mean_and_std(values):
    """`(mean, sample std)` of a list of numbers; std is None for one value."""
    values = [float(value) for value in values]
    if not values:
        raise ValueError("Expected at least one value. Received: values=[]")
    std = statistics.stdev(values) if len(values) > 1 else None
    return statistics.fmean(values), std


def mean_metrics(runs):
    """The metric-by-metric mean of several `{task: {metric: value}}` dicts."""
    runs = list(runs)
    if not runs:
        raise ValueError("Expected the metrics of at least one run. Received: []")
    return {
        task: {
            metric: statistics.fmean(float(run[task][metric]) for run in runs)
            for metric in metrics
        }
        for task, metrics in runs[0].items()
    }


def delta_m_summary(multi_runs, baselines, tasks):
    """Delta-m over seeds: each multi-task run against the mean baseline.

    Args:
        multi_runs: One `{task: {metric: value}}` per multi-task run (seed),
            or a single dict.
        baselines: One `{task: {metric: value}}` per baseline seed, a single
            dict, or a `keras_mtl.Baselines` (its test metrics).
        tasks: The `TaskConfig`s or the `Config`.

    Returns:
        `{"mean", "std", "values", "per_task"}`: delta-m's mean and sample
        standard deviation over runs (std None for one run), each run's
        value, and each task's mean term.

    Example:

    ```python
    summary = keras_mtl.delta_m_summary(
        [report.test for report in reports], baselines, config
    )
    print(f"{summary['mean']:+.2f} % +- {summary['std']:.2f}")
    ```
    """
    if isinstance(multi_runs, dict):
        multi_runs = [multi_runs]
    if hasattr(baselines, "metrics"):
        reference = baselines.metrics("test")
    elif isinstance(baselines, dict):
        reference = baselines
    else:
        reference = mean_metrics(baselines)
    per_run = [delta_m_per_task(run, reference, tasks) for run in multi_runs]
    values = [sum(terms.values()) / len(terms) for terms in per_run]
    mean, std = mean_and_std(values)
    per_task = {
        name: statistics.fmean(terms[name] for terms in per_run) for name in per_run[0]
    }
    return {"mean": mean, "std": std, "values": values, "per_task": per_task}
