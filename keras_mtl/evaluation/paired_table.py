"""`WeightingComparison`: the table of `compare_weightings`, over paired seeds.

Each row is one setting (a weighting method, or another model such as
gradient-boosted trees) scored on the same seeds; each seed's delta-m is
against the single-task models of that seed, and every comparison is a
paired difference with a 95 % t interval (`keras_mtl.evaluation.paired`).
`to_markdown`, `to_dict`, `plot` and `save` write it out.
"""

import json
import statistics
from pathlib import Path

from keras_mtl import tasks as task_lib
from keras_mtl.evaluation.delta_m import delta_m, delta_m_per_task, mean_and_std
from keras_mtl.evaluation.paired import format_difference, paired_difference
from keras_mtl.markdown import table_lines


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

    Seed s trains every method (and the single-task baselines) on the same
    split, from the same initial Trunk, in the same shuffle order, so each
    comparison is paired: the difference is taken seed by seed and reported
    with a 95 % t interval (`keras_mtl.evaluation.paired`).

    Args:
        tasks: The `TaskConfig`s, in head order.
        runs: `{method: [MethodRun, ...]}`, one run per seed.
        baselines: The single-task `Baselines` of the same config and seeds.
        split: The split the table reports (`"test"` or `"validation"`).
        reference: The method the others are compared with (equal static
            weights: `"static"`); not compared when it was not run.
        extra: `{name: {seed: {"validation": metrics, "test": metrics}}}`:
            more settings scored on the same seeds and splits, such as
            gradient-boosted trees per task.
        max_epochs: The runs' `train.epochs`. Given, the table counts the
            runs (and single-task baselines) that trained every epoch it
            allowed: early stopping did not end them, so they may still have
            been improving, and the table says so.

    Attributes:
        rows: One dict per method (then per `extra` setting), in the order
            compared: `method`, `seeds`, `<task>_<metric>` (each task's loss
            and headline metric, `{"mean", "std"}` over seeds),
            `<task>_weight` (the loss weight at the last step), `delta_m`
            (`{"mean", "std", "values"}`: each seed's delta-m in percent
            against the baselines of that seed, negative is better),
            `delta_m_<task>`, `seconds_per_epoch`, `epochs`, `at_epoch_cap`
            (runs that trained all `max_epochs`; None without it),
            `vs_single_task` and `vs_reference` (paired differences, see
            `paired_rows`).
    """

    def __init__(
        self,
        tasks,
        runs,
        baselines,
        split="test",
        reference="static",
        extra=None,
        max_epochs=None,
    ):
        self.tasks = list(tasks)
        self.max_epochs = max_epochs
        self.runs = runs
        self.baselines = baselines
        self.split = split
        self.reference = reference if reference in runs else None
        self.extra = dict(extra or {})
        self.scores = {
            method: {
                run.seed: self._split_of(method, run.report) for run in method_runs
            }
            for method, method_runs in runs.items()
        }
        for name, by_seed in self.extra.items():
            self.scores[name] = {
                seed: self._split_of(name, record) for seed, record in by_seed.items()
            }
        self.rows = [
            self._row(method, method_runs) for method, method_runs in runs.items()
        ]
        self.rows += [self._row(name, None) for name in self.extra]

    def _split_of(self, method, report):
        metrics = (
            report.get(self.split)
            if isinstance(report, dict)
            else getattr(report, self.split)
        )
        if metrics is None:
            raise ValueError(
                f"The {method!r} runs have no {self.split} metrics (an empty "
                f"split). Received: split={self.split!r}"
            )
        return metrics

    def _metrics(self):
        return [
            (task.name, metric)
            for task in self.tasks
            for metric in (task_lib.headline_metric(task), "loss")
        ]

    def _seeds(self, method):
        return sorted(self.scores[method])

    def _baseline(self, seed):
        return self.baselines.metrics(self.split, seed)

    def _delta_m_values(self, method):
        return [
            delta_m(self.scores[method][seed], self._baseline(seed), self.tasks)
            for seed in self._seeds(method)
        ]

    def _headline_values(self, method, task):
        metric = task_lib.headline_metric(task)
        return [
            self.scores[method][seed][task.name][metric] for seed in self._seeds(method)
        ]

    def _differences(self, method, other):
        """Paired differences of `method` minus `other` (None: the baselines)."""
        if other is None:
            first = {"delta_m": [0.0] * len(self._seeds(method))}
            for task in self.tasks:
                metric = task_lib.headline_metric(task)
                first[task.name] = [
                    self._baseline(seed)[task.name][metric]
                    for seed in self._seeds(method)
                ]
        else:
            if self._seeds(other) != self._seeds(method):
                return None
            first = {"delta_m": self._delta_m_values(other)}
            for task in self.tasks:
                first[task.name] = self._headline_values(other, task)
        second = {"delta_m": self._delta_m_values(method)}
        for task in self.tasks:
            second[task.name] = self._headline_values(method, task)
        return {key: paired_difference(first[key], second[key]) for key in first}

    def _row(self, method, runs):
        seeds = self._seeds(method)
        row = {"method": method, "seeds": seeds}
        for name, metric in self._metrics():
            values = [self.scores[method][seed][name][metric] for seed in seeds]
            row[f"{name}_{metric}"] = _stats(values)
        for task in self.tasks:
            key = f"{task.name}_weight"
            row[key] = (
                None
                if runs is None
                else _stats([run.history.history[key][-1] for run in runs])
            )
        values = self._delta_m_values(method)
        row["delta_m"] = {**_stats(values), "values": values}
        for task in self.tasks:
            row[f"delta_m_{task.name}"] = statistics.fmean(
                delta_m_per_task(
                    self.scores[method][seed], self._baseline(seed), self.tasks
                )[task.name]
                for seed in seeds
            )
        row["seconds_per_epoch"] = (
            None
            if runs is None
            else _stats([run.seconds / max(1, len(run.history.epoch)) for run in runs])
        )
        row["epochs"] = (
            None if runs is None else _stats([len(run.history.epoch) for run in runs])
        )
        row["at_epoch_cap"] = (
            None
            if runs is None or self.max_epochs is None
            else sum(len(run.history.epoch) >= self.max_epochs for run in runs)
        )
        row["vs_single_task"] = self._differences(method, None)
        row["vs_reference"] = (
            None
            if self.reference is None or method == self.reference
            else self._differences(method, self.reference)
        )
        return row

    def best(self):
        """The method with the lowest (best) mean delta-m."""
        return min(self.rows, key=lambda row: row["delta_m"]["mean"])["method"]

    def to_markdown(self):
        """Two tables: the metrics and delta-m, then the paired differences."""
        metrics = self._metrics()
        reference = self.reference or "-"
        header = (
            ["setting"]
            + [f"{name} {metric}" for name, metric in metrics]
            + [f"{task.name} weight" for task in self.tasks]
            + ["delta-m % [95 % CI]", f"delta-m - {reference} [95 % CI]", "epochs"]
        )
        lines = [
            f"Weighting methods on the {self.split} split, seeds {self.baselines.seeds} "
            "(paired: seed s gives every setting the same split, initial Trunk and "
            "shuffle order). Metrics: mean +- sd over seeds. Delta-m against the "
            "single-task models of the same seed, in %, negative is better; "
            "[95 % t interval of the paired difference], `*` where it excludes 0.",
            "",
        ]
        summary = self.baselines.summary()
        baseline_cells = [
            _cell(
                {key: summary[name][self.split][metric][key] for key in ("mean", "std")}
            )
            for name, metric in metrics
        ]
        filler = [""] * len(self.tasks)
        rows = [
            ["single-task models", *baseline_cells, *filler, "0 (reference)", "", ""]
        ]
        for row in self.rows:
            cells = [_cell(row[f"{name}_{metric}"]) for name, metric in metrics]
            cells += [_cell(row[f"{task.name}_weight"], 3) for task in self.tasks]
            cells.append(format_difference(row["vs_single_task"]["delta_m"]))
            vs = row["vs_reference"]
            cells.append("" if vs is None else format_difference(vs["delta_m"]))
            epochs = _cell(row["epochs"], 1)
            if row["at_epoch_cap"]:
                epochs += f" ({row['at_epoch_cap']} at the cap)"
            cells.append(epochs)
            rows.append([row["method"], *cells])
        lines += table_lines(header, rows)
        note = self.epoch_cap_note()
        if note:
            lines += ["", note]
        lines += ["", *self._per_task_markdown()]
        return "\n".join(lines) + "\n"

    def epoch_cap_note(self):
        """A warning when runs or baselines trained every epoch `max_epochs`
        allowed, else None."""
        if self.max_epochs is None:
            return None
        parts = [
            f"{row['method']} {row['at_epoch_cap']} of {len(row['seeds'])}"
            for row in self.rows
            if row["at_epoch_cap"]
        ]
        parts += [
            f"single-task {name} {capped} of {known}"
            for name, (capped, known) in self.baselines.at_epoch_cap().items()
            if capped
        ]
        if not parts:
            return None
        return (
            f"**Ended by the epoch cap, not by early stopping** (`train.epochs` = "
            f"{self.max_epochs}): {', '.join(parts)}. These runs may still have "
            "been improving, so the table compares models that the cap cut "
            "short; raise `train.epochs` until early stopping ends every run."
        )

    def _per_task_markdown(self):
        """Each task's headline metric, paired differences in points (x100)."""
        names = [f"{task.name} {task_lib.headline_metric(task)}" for task in self.tasks]
        reference = self.reference or "-"
        header = (
            ["setting"]
            + [f"{name} - single-task" for name in names]
            + [f"{name} - {reference}" for name in names]
        )
        lines = [
            "Paired differences of each task's headline metric (accuracy and "
            "AUC in points, x100; positive: higher than the other setting), "
            "[95 % CI], `*` "
            "where it excludes 0.",
            "",
        ]
        rows = []
        for row in self.rows:
            cells = []
            for key in ("vs_single_task", "vs_reference"):
                for task in self.tasks:
                    vs = row[key]
                    difference = None if vs is None else vs[task.name]
                    if difference is not None and task.kind != "regression":
                        difference = _points(difference)  # accuracy, AUC
                    cells.append(
                        "" if difference is None else format_difference(difference)
                    )
            rows.append([row["method"], *cells])
        return lines + table_lines(header, rows)

    def to_dict(self):
        """A JSON-ready dict: the split, the reference, the baselines and the rows."""
        return {
            "split": self.split,
            "reference": self.reference,
            "max_epochs": self.max_epochs,
            "baselines": self.baselines.to_dict(),
            "rows": self.rows,
        }

    def plot(self, path, title=None):
        """A dot-and-interval figure of the paired delta-m differences.

        Left: each setting's delta-m against the single-task models; right:
        against the reference method. Writes `<path>.png` and `.svg`.

        Returns:
            The `[png, svg]` paths.
        """
        from keras_mtl.plots.figures import new_figure, save_figure

        panels = [("vs_single_task", "delta-m % against the single-task models")]
        if self.reference is not None:
            panels.append(
                ("vs_reference", f"delta-m % minus {self.reference}'s (paired)")
            )
        names = [row["method"] for row in self.rows][::-1]
        figure = new_figure(figsize=(5.0 * len(panels), 0.9 + 0.38 * len(names)))
        for index, (key, label) in enumerate(panels):
            ax = figure.add_subplot(1, len(panels), index + 1)
            for position, row in enumerate(self.rows[::-1]):
                vs = row[key]
                if vs is None:
                    continue
                difference = vs["delta_m"]
                color = "#1a7f37" if difference["significant"] else "#555555"
                if difference["low"] is not None:
                    ax.plot(
                        [difference["low"], difference["high"]],
                        [position, position],
                        color=color,
                        linewidth=2,
                    )
                ax.plot(difference["mean"], position, "o", color=color)
            ax.axvline(0, color="#cf222e", linewidth=1, linestyle="--")
            ax.set_yticks(range(len(names)))
            ax.set_yticklabels(names if index == 0 else [""] * len(names))
            ax.set_xlabel(label + "; lower is better")
            ax.grid(axis="x", alpha=0.3)
        figure.suptitle(
            title
            or f"Paired differences over seeds {self.baselines.seeds}, 95 % t intervals",
            fontsize=11,
        )
        figure.tight_layout()
        return save_figure(figure, path)

    def save(self, directory, stem="comparison"):
        """Writes `<stem>.md`, `<stem>.json` and the plot; returns the paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        markdown = directory / f"{stem}.md"
        markdown.write_text(self.to_markdown())
        data = directory / f"{stem}.json"
        data.write_text(json.dumps(self.to_dict(), indent=1))
        return [markdown, data, *self.plot(directory / stem)]


def _points(difference):
    """A paired difference of a metric in [0, 1], in points (x100)."""
    scaled = dict(difference)
    for key in ("mean", "std", "low", "high"):
        if scaled[key] is not None:
            scaled[key] = 100 * scaled[key]
    return scaled
