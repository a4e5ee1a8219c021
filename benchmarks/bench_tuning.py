"""Can tuning the loss weights make the model worse? The pick against equal weights.

    python benchmarks/run_all.py tuning            # adult, 5 seeds, ~20 min on 2 cores
    python benchmarks/run_all.py tuning --quick    # shapes/tiny, 2 seeds, 3 trials

For each benchmark seed s, on the `adult` preset (`train.seed = s`):
single-task baselines with seed s, then `keras_mtl.run_search`: a random
search of 6 trials against validation delta-m, 2 executions per trial (seeds
s and s + 1), early stopping. Trial 0 is always equal weights (the preset's
own). Three trials are evaluated on the test split from their checkpoints,
each its last execution's best epoch, which started from seed s + 1 in every
trial: equal weights, the one-standard-error pick (`tuning.selection =
"one_se"`, the default) and the best validation mean (`"best"`, what Keras
Tuner picks). The test delta-m of each pick minus that of equal weights is
paired by seed; its mean comes with a 95 % t interval
(`keras_mtl.evaluation.paired`). Lower delta-m is better.

Goal: the one-SE pick is never significantly worse than equal weights on
test (the interval of the difference does not lie above 0), and is better
where its validation gain was significant.

Two scenarios (`KERAS_MTL_BENCH_TUNING_SCENARIOS`, default both; a scenario
left out keeps its committed section, marked with the date it ran), each over
`KERAS_MTL_BENCH_SEEDS` seeds (default 5):

- `adult`: the preset as it is, where equal weights are hard to beat.
- `unscaled`: where the weights matter. Head 2 regresses `hours-per-week`
  (taken out of the inputs) on its raw scale (`tasks.1.normalize = false`),
  so its squared error (about 120) outweighs marital status' cross-entropy
  (about 1) a hundredfold, as happens with a regression target a user forgot
  to standardise; `tuning.weight_ratio = [0.001, 10]`. This is where the
  second half of the goal can be put to the test.
"""

import json
import os
import tempfile
import time

import keras_mtl
from keras_mtl.evaluation.paired import format_difference, paired_difference

import harness
from workloads import adult_csv

# Head 2 regresses hours per week on its raw scale (see the module docstring).
UNSCALED = [
    'data.exclude_columns=["relationship", "fnlwgt", "hours-per-week"]',
    "tasks.1.name=hours",
    "tasks.1.kind=regression",
    "tasks.1.label=hours-per-week",
    "tasks.1.normalize=false",
    "tuning.weight_ratio=[0.001, 10.0]",
]


def scenarios():
    names = os.environ.get("KERAS_MTL_BENCH_TUNING_SCENARIOS", "adult,unscaled")
    return [name for name in names.split(",") if name]


def _settings(quick, root, scenario="adult"):
    overrides = [
        f"train.run_dir={root}/runs",
        f"export.base_dir={root}/saved",
        f"tuning.directory={root}/tuning",
    ]
    if quick:
        return (
            "shapes",
            [0, 1],
            3,
            [
                *overrides,
                "data.dataset=shapes/tiny",
                "train.epochs=2",
                "model.width=8",
                "model.depth=2",
                "model.head_units=16",
            ],
        )
    count = int(os.environ.get("KERAS_MTL_BENCH_SEEDS", 5))
    return (
        "adult",
        list(range(count)),
        6,
        [
            *overrides,
            f"data.path={adult_csv()}",
            "train.epochs=6",
            "train.early_stopping_patience=2",
            *(UNSCALED if scenario == "unscaled" else []),
        ],
    )


def _test_delta_m(search, trial_id, datasets, baselines):
    trial = search.tuner.oracle.get_trial(trial_id)
    config = search.tuner.hypermodel.trial_config(trial.hyperparameters)
    model = search.tuner.load_model(trial)
    test = keras_mtl.evaluate(model, datasets.test, config)
    return keras_mtl.delta_m(test, baselines.metrics("test"), config)


def _one_seed(config, seed, datasets):
    directory = f"{config.tuning.directory}/seed{seed}"
    seeded = config.replace([f"train.seed={seed}", f"tuning.directory={directory}"])
    baselines = keras_mtl.train_baselines(seeded, datasets=datasets)
    search = keras_mtl.run_search(seeded, datasets=datasets, export=False, verbose=0)
    one_se = search.selection
    best = keras_mtl.tuning.selection.select_trial(
        search.rows, search.tuner.oracle.objective.direction, "best"
    )
    picks = {
        "equal": one_se["reference"],
        "one_se": one_se["chosen"],
        "best": best["chosen"],
    }
    test = {
        name: _test_delta_m(search, trial, datasets, baselines)
        for name, trial in picks.items()
    }
    ratios = {
        row["trial"]: row[f"weight_{config.tasks[1].name}"] for row in search.rows
    }
    return {
        "seed": seed,
        "picks": picks,
        "ratios": {name: ratios[trial] for name, trial in picks.items()},
        "validation": one_se,
        "test_delta_m": test,
        "rows": search.rows,
    }


def _seed_row(run, ratio_key):
    selection, test = run["validation"], run["test_delta_m"]
    ratios = {row["trial"]: row[ratio_key] for row in run["rows"]}
    significant = run["picks"]["one_se"] != run["picks"]["equal"]
    return [
        run["seed"],
        f"{selection['reference_mean']:+.2f}",
        f"{selection['candidate_mean']:+.2f} "
        f"(trial {selection['candidate']}, ratio {ratios[selection['candidate']]:.3g})",
        f"{-selection['gain']:+.2f} +- {selection['se_difference']:.2f}",
        "candidate" if significant else "equal weights",
        f"{test['equal']:+.2f}",
        f"{test['one_se']:+.2f}",
        f"{test['best']:+.2f} (trial {run['picks']['best']})",
    ]


def summarize(runs, preset, trials, executions, ratio_key, minutes):
    """The section's Markdown and the paired differences, from the seeds' runs."""
    seeds = [r["seed"] for r in runs]
    equal = [r["test_delta_m"]["equal"] for r in runs]
    differences = {
        name: paired_difference(equal, [r["test_delta_m"][name] for r in runs])
        for name in ("one_se", "best")
    }
    chosen = [r for r in runs if r["picks"]["one_se"] != r["picks"]["equal"]]
    low = differences["one_se"]["low"]
    worse = low is not None and low > 0
    better_where_chosen = [
        r["test_delta_m"]["one_se"] - r["test_delta_m"]["equal"] for r in chosen
    ]
    goal = not worse and all(value < 0 for value in better_where_chosen)
    headers = [
        "seed",
        "val delta-m: equal",
        "val: best candidate",
        "val difference +- SE",
        "one-SE pick",
        "test delta-m: equal",
        "test: one-SE pick",
        "test: best-mean pick",
    ]
    rows = [_seed_row(r, ratio_key) for r in runs]
    lines = [
        f"`{preset}`, seeds {seeds}: per seed a random search of {trials} trials x "
        f"{executions} executions against validation delta-m (%, lower is "
        "better), trial 0 = equal weights. Test delta-m of each pick's "
        "checkpoint (its last execution, seed s + 1 in every trial) against the "
        f"seed's single-task baselines. Wall time {minutes:.1f} min (at "
        f"niceness {os.nice(0)}, 2 shared cores).",
        "",
        harness.markdown_table(headers, rows),
        "",
        "Test delta-m minus equal weights', paired by seed (mean [95 % t interval], "
        "`*` = interval excludes 0; negative = the pick is better):",
        "",
        f'- one-SE pick (`tuning.selection = "one_se"`, the default): '
        f"{format_difference(differences['one_se'])}",
        f'- best validation mean (`"best"`, Keras Tuner\'s pick): '
        f"{format_difference(differences['best'])}",
        f"- seeds where the one-SE rule chose a candidate: {len(chosen)} of "
        f"{len(runs)}; their test differences: "
        + (", ".join(f"{value:+.2f}" for value in better_where_chosen) or "none"),
        "",
        "Goal (the one-SE pick never significantly worse than equal weights on "
        "test, and better where its validation gain was significant): "
        + ("met" if goal else "NOT met")
        + (
            ""
            if chosen
            else "; no seed had a significant validation gain, so "
            "its second half was not put to the test"
        )
        + ".",
    ]
    return "\n".join(lines), differences, goal


def _scenario(quick, scenario):
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as root:
        preset, seeds, trials, overrides = _settings(quick, root, scenario)
        config = keras_mtl.load_config(
            preset,
            [*overrides, f"tuning.max_trials={trials}", "tuning.objective=delta_m"],
        )
        datasets = keras_mtl.load_datasets(config)
        runs = [_one_seed(config, seed, datasets) for seed in seeds]
    minutes = (time.perf_counter() - start) / 60
    ratio_key = f"weight_{config.tasks[1].name}"
    executions = config.tuning.executions_per_trial
    label = preset if scenario == "adult" or quick else f"{preset}, {scenario}"
    markdown, differences, goal = summarize(
        runs, label, trials, executions, ratio_key, minutes
    )
    return {
        "scenario": scenario,
        "markdown": markdown,
        "preset": preset,
        "seeds": seeds,
        "trials": trials,
        "executions": executions,
        "minutes": minutes,
        "differences": differences,
        "goal_met": goal,
        "runs": runs,
    }


def _earlier_scenarios(names):
    """Scenarios of the committed `tuning.json` that this run leaves out,
    each with the date it ran (a result from before scenarios were named is
    the `adult` one)."""
    path = harness.RESULTS / "tuning.json"
    if not path.is_file():
        return []
    record = json.loads(path.read_text())
    earlier = record.get("scenarios") or [{**record, "scenario": "adult"}]
    kept = []
    for result in earlier:
        if result["scenario"] not in names:
            created = result.get("created", record["created"])
            kept.append({**result, "created": created, "rerun": False})
    return kept


def run(quick=False):
    names = ["adult"] if quick else scenarios()
    results = [_scenario(quick, name) for name in names]
    if quick:
        sections = [results[0]["markdown"]]
    else:
        results += _earlier_scenarios(names)
        order = {name: i for i, name in enumerate(("adult", "unscaled"))}
        results.sort(key=lambda r: order.get(r["scenario"], len(order)))
        sections = [
            f"### Scenario `{r['scenario']}`"
            + ("" if r.get("rerun", True) else f" (run {r['created']}, not rerun)")
            + f"\n\n{r['markdown']}"
            for r in results
        ]
    return {
        "title": "Loss-weight tuning: the pick against equal weights",
        "markdown": "\n\n".join(sections),
        "scenarios": results,
        "goal_met": all(r["goal_met"] for r in results),
    }
