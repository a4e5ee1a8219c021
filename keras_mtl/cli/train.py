"""`keras-mtl train` and `keras-mtl config`.

keras-mtl train [--preset NAME | --config FILE] [--set KEY=VALUE ...] [--replicas N]
                [--workers N [--max-restarts K]] [--no-export]
keras-mtl config [--preset NAME | --config FILE] [--set KEY=VALUE ...]
"""

import json
import sys

from keras_mtl.cli import multi_worker as multi_worker_cli
from keras_mtl.cli.common import (
    add_config_arguments,
    check_output_dirs,
    load_config_from_args,
)


def _cmd_config(args):
    print(load_config_from_args(args).to_toml(), end="")


def _cmd_train(args):
    config = load_config_from_args(args)
    check_output_dirs(config, export=not args.no_export)
    if args.workers is not None or args.max_restarts:
        return multi_worker_cli.launch_workers(args, config)
    import keras_mtl
    from keras_mtl import multi_worker
    from keras_mtl.multi_worker import report
    from keras_mtl.run_directory import lock_run_dir, run_dir_for

    report.attach_to_launcher()
    strategy = keras_mtl.make_strategy(config.train)
    report.report(stage="ready")
    chief = multi_worker.is_chief(strategy)
    # Held from before the data loads; `train` takes it again inside.
    with lock_run_dir(run_dir_for(config), enabled=chief):
        datasets = keras_mtl.load_datasets(
            config, replicas=strategy.num_replicas_in_sync
        )
        model, history, run_dir = keras_mtl.train(
            config, datasets=datasets, strategy=strategy, verbose=args.verbose
        )
    if not chief:  # The chief evaluates and exports.
        report.report_finished(model, history)
        return
    metrics = keras_mtl.evaluate(model, datasets.test, config)
    print("Test metrics: " + json.dumps(metrics), file=sys.stderr)
    print(f"Run directory: {run_dir}", file=sys.stderr)
    if args.no_export:
        report.report_finished(model, history)
        return
    path = keras_mtl.export_run(model, config, datasets, metrics)
    report.report_finished(model, history, export=path)
    print(path)


def add_commands(commands):
    """Adds `train` and `config` to the `keras-mtl` sub-command parsers."""
    train = commands.add_parser("train", help="train, evaluate and export a model")
    add_config_arguments(train)
    train.add_argument("--replicas", type=int, help="same as --set train.replicas=N")
    train.add_argument(
        "--no-export", action="store_true", help="skip the SavedModel export"
    )
    train.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras fit verbosity"
    )
    multi_worker_cli.add_launcher_arguments(train)
    train.set_defaults(run=_cmd_train)

    config = commands.add_parser("config", help="print the resolved config as TOML")
    add_config_arguments(config)
    config.set_defaults(run=_cmd_config)
