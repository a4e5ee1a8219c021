"""`keras-mtl baseline` and `keras-mtl tune`.

keras-mtl baseline [--preset NAME | --config FILE] [--set KEY=VALUE ...]
                   [--seeds 0 1 2] [--model DIR] [--retrain] [--json]
keras-mtl tune [--preset NAME | --config FILE] [--set KEY=VALUE ...]
               [--tuner random|bayesian|hyperband] [--max-trials N]
               [--objective NAME] [--overwrite] [--no-export]
"""

import json
import sys

from keras_mtl.cli.common import (
    add_config_arguments,
    check_output_dirs,
    load_config_from_args,
)


def _cmd_baseline(args):
    config = load_config_from_args(args)  # Before TensorFlow starts.
    check_output_dirs(config, export=False)
    import keras_mtl
    from keras_mtl.evaluation.baselines import baseline_key

    baselines = keras_mtl.train_baselines(
        config, seeds=args.seeds, retrain=args.retrain, verbose=args.verbose
    )
    output = baselines.to_dict()
    text = baselines.to_markdown()
    if args.model:
        from keras_mtl.evaluation.report import evaluate_saved_model
        from keras_mtl.saved_model import LoadedModel

        recorded = keras_mtl.config_from_dict(
            LoadedModel(args.model).metadata.get("config", config.to_dict())
        )
        for task in config.tasks:
            if baseline_key(recorded, task.name) != baseline_key(config, task):
                print(
                    f"keras-mtl baseline: warning: {args.model} was trained with "
                    f"other data, model or budget than these {task.name!r} "
                    "baselines; delta-m compares unlike runs.",
                    file=sys.stderr,
                )
        metrics = evaluate_saved_model(args.model, "test")
        summary = keras_mtl.delta_m_summary(metrics, baselines, config)
        output["model"] = {"path": args.model, "test": metrics, "delta_m": summary}
        terms = ", ".join(f"{t} {v:+.2f} %" for t, v in summary["per_task"].items())
        text += (
            f"\nDelta-m of {args.model} on the test split: {summary['mean']:+.2f} % "
            f"({terms}; negative = the multi-task model is better)\n"
        )
    print(json.dumps(output, indent=1) if args.json else text, end="")


def _cmd_tune(args):
    import keras_mtl

    extra = [
        f"tuning.{key}={getattr(args, key)}"
        for key in ("tuner", "max_trials", "objective")
        if getattr(args, key) is not None
    ]
    config = load_config_from_args(args, extra)
    check_output_dirs(
        config, run_dir=not config.tuning.directory, export=not args.no_export
    )
    try:
        result = keras_mtl.run_search(
            config,
            overwrite=args.overwrite,
            export=not args.no_export,
            verbose=args.verbose,
        )
    except ImportError as error:
        raise RuntimeError(str(error)) from None
    if result.role == "worker":
        print(
            f"keras-mtl tune: worker finished; the chief writes {result.project_dir}",
            file=sys.stderr,
        )
        return
    for name, path in result.files.items():
        print(f"Results ({name}): {path}", file=sys.stderr)
    if result.best_trial is None:
        raise RuntimeError(f"No trial finished; see {result.project_dir}.")
    best = next(row for row in result.rows if row["trial"] == result.best_trial)
    shown = {
        key: value
        for key, value in best.items()
        if key not in ("status", "pareto", "chosen", "reference") and value is not None
    }
    print(f"Selection: {result.selection['decision']}", file=sys.stderr)
    print(f"Chosen trial: {json.dumps(shown, default=str)}", file=sys.stderr)
    print("Test metrics: " + json.dumps(result.report.test), file=sys.stderr)
    if result.export_path is not None:
        print(result.export_path)


def add_commands(commands):
    """Adds `baseline` and `tune` to the `keras-mtl` sub-command parsers."""
    baseline = commands.add_parser(
        "baseline", help="train (or load) the single-task baselines; delta-m"
    )
    add_config_arguments(baseline)
    baseline.add_argument(
        "--seeds", type=int, nargs="+", help="training seeds (default: train.seed)"
    )
    baseline.add_argument("--replicas", type=int, help="same as --set train.replicas=N")
    baseline.add_argument(
        "--model", help="also print the delta-m of this SavedModel (test split)"
    )
    baseline.add_argument(
        "--retrain", action="store_true", help="train again even if cached"
    )
    baseline.add_argument("--json", action="store_true", help="print JSON")
    baseline.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0)
    baseline.set_defaults(run=_cmd_baseline)

    tune = commands.add_parser(
        "tune", help="tune the loss weights with Keras Tuner; export the best model"
    )
    add_config_arguments(tune)
    tune.add_argument(
        "--tuner",
        choices=("random", "bayesian", "hyperband"),
        help="same as --set tuning.tuner=NAME (default: random)",
    )
    tune.add_argument(
        "--max-trials", type=int, help="same as --set tuning.max_trials=N"
    )
    tune.add_argument(
        "--objective",
        help="delta_m, unweighted_loss or val_<task>_<metric> (default: auto)",
    )
    tune.add_argument(
        "--overwrite", action="store_true", help="start over instead of resuming"
    )
    tune.add_argument("--replicas", type=int, help="same as --set train.replicas=N")
    tune.add_argument(
        "--no-export", action="store_true", help="skip the SavedModel export"
    )
    tune.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=1, help="progress output"
    )
    tune.set_defaults(run=_cmd_tune)
