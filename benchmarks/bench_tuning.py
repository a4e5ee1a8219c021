"""Does tuning the loss-weight ratio help, and what would `val_loss` have picked?

    python benchmarks/run_all.py tuning            # shapes, 3 seeds, 12 trials
    python benchmarks/run_all.py tuning --quick    # shapes/tiny, 1 seed, 3 trials

On the `shapes` preset: single-task baselines over the seeds, then a random
search of `tasks.fine.weight / tasks.coarse.weight` against `delta_m` on the
validation split. Three weightings are then retrained with every seed and
compared on the test split by delta-m against the baselines (negative = the
multi-task model is better): equal weights, the tuned ratio, and the trial a
weighted `val_loss` objective would have chosen from the same search.
"""

import statistics
import tempfile

import keras_mtl

import harness


def _test_metrics(config, seeds, run_root, label):
    runs = []
    for seed in seeds:
        seeded = config.replace(
            [f"train.seed={seed}", f"train.run_dir={run_root}/{label}-{seed}"]
        )
        # A fresh pipeline per run: a reused one continues its shuffle order,
        # so the same config and seed would see other batches.
        datasets = keras_mtl.load_datasets(seeded)
        model, _, _ = keras_mtl.train(seeded, datasets=datasets, verbose=0)
        runs.append(keras_mtl.evaluate(model, datasets.test, seeded))
    return runs


def _row(label, config, runs, baselines):
    summary = keras_mtl.delta_m_summary(runs, baselines, config)
    weights = ", ".join(f"{task.weight:.3g}" for task in config.tasks)
    std = "" if summary["std"] is None else f" +- {summary['std']:.2f}"
    accuracies = [
        statistics.fmean(run[task.name]["accuracy"] for run in runs)
        for task in config.tasks
    ]
    return [
        label,
        weights,
        f"{summary['mean']:+.2f}{std}",
        *(f"{value:.4f}" for value in accuracies),
    ], summary


def run(quick=False):
    seeds = [0] if quick else [0, 1, 2]
    trials = 3 if quick else 12
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as root:
        overrides = [f"train.run_dir={root}/runs", f"export.base_dir={root}/saved"]
        if quick:
            overrides += [
                "data.dataset=shapes/tiny",
                "train.epochs=2",
                "model.width=8",
                "model.depth=2",
                "model.head_units=16",
            ]
        config = keras_mtl.load_config("shapes", overrides)
        datasets = keras_mtl.load_datasets(config)
        baselines = keras_mtl.train_baselines(config, seeds, datasets=datasets)
        search = keras_mtl.run_search(
            config.replace([f"tuning.max_trials={trials}", "tuning.objective=delta_m"]),
            datasets=datasets,
            export=False,
            verbose=0,
        )
        oracle = search.tuner.oracle
        finished = [t for t in oracle.trials.values() if t.score is not None]
        trap = min(finished, key=lambda t: t.metrics.get_last_value("val_loss"))
        candidates = {
            "equal weights": config,
            "tuned against delta_m": search.best_config,
            "val_loss's pick": keras_mtl.tuning.apply_values(
                config, trap.hyperparameters.values
            ),
        }
        rows, summaries = [], {}
        for label, candidate in candidates.items():
            runs = _test_metrics(candidate, seeds, f"{root}/mtl", label[:5])
            row, summaries[label] = _row(label, candidate, runs, baselines)
            rows.append(row)
        reference = baselines.metrics("test")
        rows.append(
            [
                "single-task baselines",
                "-",
                "0 (reference)",
                *(f"{reference[t.name]['accuracy']:.4f}" for t in config.tasks),
            ]
        )
    names = [task.name for task in config.tasks]
    markdown = "\n".join(
        [
            f"Test-split delta-m (%, negative = better than single-task) over seeds "
            f"{seeds}; search: random, {trials} trials, objective delta_m on the "
            f"validation split; `{'shapes/tiny' if quick else 'shapes'}`.",
            "",
            harness.markdown_table(
                [
                    "model",
                    "weights (" + ", ".join(names) + ")",
                    "delta-m %",
                    *(f"{name} accuracy" for name in names),
                ],
                rows,
            ),
        ]
    )
    return {
        "title": "Loss-weight tuning: delta-m against single-task baselines",
        "markdown": markdown,
        "seeds": seeds,
        "trials": trials,
        "delta_m": summaries,
        "search_rows": search.rows,
    }
