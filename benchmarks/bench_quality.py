"""Multi-task quality against single-task baselines, on adult and on shapes.

For each dataset: the single-task baselines (the same trunk with one head, the
same budget), the two-head model with equal static weights, with static weights
tuned by Keras Tuner against delta-m on the validation split, and with each
dynamic weighting method (every registered one). Every setting is trained with seeds 0, 1, 2 (weight
initialisation and shuffle order; the data split stays fixed, and each run
gets a fresh pipeline, so all settings see the same batches for a seed) and
reported on the test
split as mean +- standard deviation. Delta-m follows keras-mtl's convention
(`keras_mtl.delta_m`): the mean over tasks of the signed relative change of the
headline metric against the baseline, in percent; negative = the multi-task
model is better.
"""

import os
import statistics
import tempfile
import time

import keras_mtl
from keras_mtl import tasks as task_lib
from keras_mtl.config import weighting_methods

import harness
import workloads

# Every registered weighting method beside equal static weights.
METHODS = tuple(
    spec.name for spec in weighting_methods.specs() if spec.name != "static"
)
# `KERAS_MTL_BENCH_DATASETS=adult` runs one section (shapes takes hours on 2 cores).
DATASETS = os.environ.get("KERAS_MTL_BENCH_DATASETS", "adult,shapes").split(",")


def _configs(quick, work):
    common = [f"train.run_dir={work}/runs", f"export.base_dir={work}/models"]
    if quick:
        common += ["train.epochs=2"]
    adult = keras_mtl.load_config(
        "adult", [f"data.path={workloads.adult_csv()}", *common]
    )
    shapes_overrides = (
        ["data.dataset=shapes/tiny", "train.batch_size=64"] if quick else []
    )
    shapes = keras_mtl.load_config("shapes", [*common, *shapes_overrides])
    return {"adult": adult, "shapes": shapes}


def _train_and_test(config, seed, name, work):
    config = config.replace(
        [f"train.seed={seed}", f"train.run_dir={work}/runs/{name}-{seed}"]
    )
    # A fresh pipeline per run: a reused one goes on with its shuffle order, so
    # every setting would see other batches.
    datasets = keras_mtl.load_datasets(config)
    model, _, _ = keras_mtl.train(config, datasets=datasets, verbose=0)
    return keras_mtl.evaluation_report(model, datasets, config).test


def _tuned_ratio(config, datasets, trials, work):
    search = config.replace(
        [
            f"train.run_dir={work}/runs/search",
            "tuning.tuner=random",
            f"tuning.max_trials={trials}",
            "tuning.objective=delta_m",
        ]
    )
    keras_mtl.train_baselines(search, seeds=[search.train.seed], datasets=datasets)
    result = keras_mtl.run_search(search, datasets=datasets, export=False, verbose=0)
    return [task.weight for task in result.best_config.tasks]


def _format(values, digits=3):
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} +- {statistics.stdev(values):.{digits}f}"


def _dataset_section(label, config, seeds, trials, work):
    datasets = keras_mtl.load_datasets(config)
    tasks = config.tasks
    headline = {task.name: task_lib.headline_metric(task) for task in tasks}
    start = time.perf_counter()
    baselines = keras_mtl.train_baselines(config, seeds=seeds, datasets=datasets)
    weights = _tuned_ratio(config, datasets, trials, work)
    settings = {"equal static weights (1, 1)": config}
    settings[f"tuned static weights ({weights[0]:g}, {weights[1]:.3g})"] = (
        config.replace([f"tasks.0.weight={weights[0]}", f"tasks.1.weight={weights[1]}"])
    )
    for method in METHODS:
        settings[f"{method}"] = config.replace([f"weighting.method={method}"])
    runs = {}
    for name, setting in settings.items():
        runs[name] = [
            _train_and_test(setting, seed, name.split()[0], work) for seed in seeds
        ]

    rows = []
    for task in tasks:
        values = [
            baselines.metrics("test", seed)[task.name][headline[task.name]]
            for seed in seeds
        ]
        cells = ["-"] * len(tasks)
        cells[tasks.index(task)] = _format(values)
        rows.append([f"single-task {task.name}", *cells, "0 (reference)"])
    summaries = {}
    for name, results in runs.items():
        summary = keras_mtl.delta_m_summary(results, baselines, config)
        summaries[name] = summary
        cells = [
            _format([r[task.name][headline[task.name]] for r in results])
            for task in tasks
        ]
        delta = f"{summary['mean']:+.2f}" + (
            f" +- {summary['std']:.2f}" if summary["std"] is not None else ""
        )
        rows.append([name, *cells, delta])
    best = min(summaries, key=lambda name: summaries[name]["mean"])
    equal = summaries["equal static weights (1, 1)"]["mean"]
    verdict = (
        f"Best setting on {label}: **{best}**, delta-m {summaries[best]['mean']:+.2f} % "
        f"({'better' if summaries[best]['mean'] < 0 else 'worse'} than the single-task "
        f"baselines on average; equal static weights: {equal:+.2f} %)."
    )
    if summaries[best]["mean"] >= 0:
        verdict += " Multi-task learning does not help here on average."
    headers = [
        "setting",
        *[f"{task.name} {headline[task.name]} ({task.kind})" for task in tasks],
        "delta-m % (lower is better)",
    ]
    markdown = (
        f"### {label}\n\n{harness.markdown_table(headers, rows)}\n\n{verdict}\n\n"
        f"Seeds {seeds}; {config.train.epochs} epochs, batch {config.train.batch_size}; "
        f"tuning: {trials} random trials against validation delta-m; "
        f"{time.perf_counter() - start:.0f} s."
    )
    return markdown, {
        "baselines": baselines.to_dict(),
        "runs": runs,
        "delta_m": summaries,
        "tuned_weights": weights,
        "best": best,
    }


def run(quick=False):
    seeds = [0] if quick else [0, 1, 2]
    trials = 2 if quick else 8
    work = tempfile.mkdtemp(prefix="keras-mtl-bench-quality-")
    sections, results = [], {}
    for label, config in _configs(quick, work).items():
        if label not in DATASETS:
            continue
        markdown, results[label] = _dataset_section(label, config, seeds, trials, work)
        sections.append(markdown)
    note = (
        "Test-split headline metrics (accuracy for classes, AUC for the binary "
        "income task), mean +- sample standard deviation over seeds."
    )
    return {
        "title": "Multi-task quality against single-task baselines",
        "markdown": "\n\n".join(sections) + "\n\n" + note,
        "results": results,
    }
