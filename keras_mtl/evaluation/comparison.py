"""`compare_weightings`: static weights against the dynamic methods, in one table.

Each method trains the same config (same data, model, budget and seeds) with
only `weighting.method` changed, is evaluated on both held-out splits
(`evaluation_report`) and compared with the single-task baselines
(`train_baselines`, cached) by delta-m. Every run gets a fresh input pipeline,
so every method sees the same batches in the same order (a reused pipeline
goes on with its shuffle order); multi-threaded CPU kernels still make two
runs of one config differ slightly, so compare over several seeds. Each run
lives in its own directory,
`<train.run_dir>/<name>/weighting/<method>-seed<seed>/<name>/`.

Example:

```python
comparison = keras_mtl.compare_weightings(config, ["static", "uncertainty", "famo"])
print(comparison.to_markdown())   # per-task metrics, final weights, delta-m
comparison.runs["famo"][0].history.history["fine_weight"]
```
"""

import dataclasses
import json
import time

from keras_mtl import tasks as task_lib
from keras_mtl.config import weighting_methods
from keras_mtl.data import load_datasets
from keras_mtl.distribute import make_strategy
from keras_mtl.evaluation.baselines import train_baselines
from keras_mtl.evaluation.delta_m import delta_m_summary, mean_and_std
from keras_mtl.evaluation.report import evaluation_report
from keras_mtl.training import run_dir_for, train


@dataclasses.dataclass
class MethodRun:
    """One method trained with one seed.

    Attributes:
        method: The `weighting.method`.
        seed: The `train.seed`.
        model: The trained model.
        history: Its `keras.callbacks.History`.
        report: Its `EvaluationReport` (validation and test metrics).
        seconds: Wall-clock seconds of `train` (fit, validation, callbacks).
        run_dir: The run's directory.
    """

    method: str
    seed: int
    model: object
    history: object
    report: object
    seconds: float
    run_dir: object


def _stats(values):
    mean, std = mean_and_std(values)
    return {"mean": mean, "std": std}


def _cell(stats, digits=4, signed=False):
    if stats is None:
        return ""
    text = f"{stats['mean']:+.{digits}f}" if signed else f"{stats['mean']:.{digits}f}"
    if stats["std"] is not None:
        text += f" +- {stats['std']:.{digits}f}"
    return text


class WeightingComparison:
    """The runs of `compare_weightings` and their summary table.

    Args:
        tasks: The `TaskConfig`s, in head order.
        runs: `{method: [MethodRun, ...]}`, one run per seed.
        baselines: The single-task `Baselines` of the same config.
        split: The split the table reports (`"test"` or `"validation"`).

    Attributes:
        rows: One dict per method, in the order compared: `method`,
            `<task>_<metric>` (each task's loss and headline metric, as
            `{"mean", "std"}` over seeds), `<task>_weight` (the loss weight
            at the last step), `delta_m` and `delta_m_<task>` (percent,
            negative is better), `seconds_per_epoch`.
    """

    def __init__(self, tasks, runs, baselines, split="test"):
        self.tasks = list(tasks)
        self.runs = runs
        self.baselines = baselines
        self.split = split
        self.rows = [
            self._row(method, method_runs) for method, method_runs in runs.items()
        ]

    def _metrics(self):
        return [
            (task.name, metric)
            for task in self.tasks
            for metric in (task_lib.headline_metric(task), "loss")
        ]

    def _row(self, method, runs):
        if any(getattr(run.report, self.split) is None for run in runs):
            raise ValueError(
                f"The {method!r} runs have no {self.split} metrics (an empty "
                f"split). Received: split={self.split!r}"
            )
        row = {"method": method, "seeds": [run.seed for run in runs]}
        for name, metric in self._metrics():
            values = [getattr(run.report, self.split)[name][metric] for run in runs]
            row[f"{name}_{metric}"] = _stats(values)
        for task in self.tasks:
            key = f"{task.name}_weight"
            values = [run.history.history[key][-1] for run in runs]
            row[key] = _stats(values)
        summary = delta_m_summary(
            [getattr(run.report, self.split) for run in runs],
            self.baselines.metrics(self.split),
            self.tasks,
        )
        row["delta_m"] = {"mean": summary["mean"], "std": summary["std"]}
        for name, value in summary["per_task"].items():
            row[f"delta_m_{name}"] = value
        row["seconds_per_epoch"] = _stats(
            [run.seconds / max(1, len(run.history.epoch)) for run in runs]
        )
        return row

    def best(self):
        """The method with the lowest (best) mean delta-m."""
        return min(self.rows, key=lambda row: row["delta_m"]["mean"])["method"]

    def to_markdown(self):
        """The table: one row per method under the baselines' row."""
        metrics = self._metrics()
        header = (
            ["method"]
            + [f"{name} {metric}" for name, metric in metrics]
            + [f"{task.name} weight" for task in self.tasks]
            + ["delta-m %", "s / epoch"]
        )
        lines = [
            f"Weighting methods on the {self.split} split; delta-m against the "
            f"single-task baselines (seeds {self.baselines.seeds}), negative is "
            "better; weights at the last step.",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        summary = self.baselines.summary()
        baseline_cells = [
            _cell(
                {key: summary[name][self.split][metric][key] for key in ("mean", "std")}
            )
            for name, metric in metrics
        ]
        filler = [""] * len(self.tasks)
        lines.append(
            "| single-task baselines | "
            + " | ".join(baseline_cells + filler + ["0 (reference)", ""])
            + " |"
        )
        for row in self.rows:
            cells = [_cell(row[f"{name}_{metric}"]) for name, metric in metrics]
            cells += [_cell(row[f"{task.name}_weight"], 3) for task in self.tasks]
            cells += [_cell(row["delta_m"], 2, signed=True)]
            cells += [_cell(row["seconds_per_epoch"], 2)]
            lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self):
        """A JSON-ready dict: the split, the baselines and the rows."""
        return {
            "split": self.split,
            "baselines": self.baselines.to_dict(),
            "rows": self.rows,
        }


def _check_methods(methods):
    known = weighting_methods.names()
    methods = list(known if methods is None else methods)
    unknown = [method for method in methods if method not in known]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(
            "Expected distinct weighting methods from "
            f"{list(known)}. Received: methods={methods}"
        )
    return methods


def _run_method(config, method, seed, strategy, callbacks, verbose):
    """Trains and evaluates `config` with `method` and `seed`, in its own
    run directory; returns a `MethodRun`."""
    directory = run_dir_for(config) / "weighting" / f"{method}-seed{seed}"
    run_config = config.replace(
        [
            f"weighting.method={method}",
            f"train.seed={seed}",
            f"train.run_dir={json.dumps(str(directory))}",
        ]
    )
    # A fresh pipeline: its shuffle order comes from run_config alone.
    datasets = load_datasets(run_config, replicas=strategy.num_replicas_in_sync)
    start = time.perf_counter()
    model, history, run_dir = train(
        run_config,
        datasets=datasets,
        strategy=strategy,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    report = evaluation_report(model, datasets, run_config)
    return MethodRun(method, seed, model, history, report, seconds, run_dir)


def compare_weightings(
    config,
    methods=None,
    *,
    seeds=None,
    strategy=None,
    baselines=None,
    split="test",
    callbacks=(),
    verbose=0,
):
    """Trains `config` once per weighting method (and seed) and compares them.

    Everything but `weighting.method` (and `train.seed`) stays as `config`
    has it, so the methods see the same data, model and budget; the single-task
    baselines are trained once per seed with the same budget, or read from
    their cache.

    Args:
        config: A `keras_mtl.Config`; its `[weighting]` settings apply to
            every method that uses them.
        methods: `weighting.method` values, in table order; default: every
            registered method.
        seeds: Training seeds; default `[config.train.seed]`.
        strategy: A `tf.distribute.Strategy`; `make_strategy(config.train)`
            by default.
        baselines: A `keras_mtl.Baselines` for the same config and seeds;
            trained (or loaded from the cache) by default.
        split: `"test"` or `"validation"`: the split of the table.
        callbacks: More Keras callbacks for every run.
        verbose: `model.fit` verbosity.

    Returns:
        A `WeightingComparison`.
    """
    methods = _check_methods(methods)
    if split not in ("test", "validation"):
        raise ValueError(
            f"Expected split 'test' or 'validation'. Received: split={split!r}"
        )
    seeds = [config.train.seed] if seeds is None else [int(seed) for seed in seeds]
    if split == "validation" and not config.data.validation_fraction:
        raise ValueError(
            "split='validation' needs a validation split; set "
            "data.validation_fraction > 0. Received: data.validation_fraction="
            f"{config.data.validation_fraction}"
        )
    strategy = strategy or make_strategy(config.train)
    if baselines is None:
        baselines = train_baselines(config, seeds, strategy=strategy, verbose=verbose)
    runs = {
        method: [
            _run_method(config, method, seed, strategy, callbacks, verbose)
            for seed in seeds
        ]
        for method in methods
    }
    return WeightingComparison(config.tasks, runs, baselines, split)
