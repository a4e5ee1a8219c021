"""`keras-mtl`: train, evaluate, predict and inspect configs from the shell.

    keras-mtl train [--preset NAME | --config FILE] [--set KEY=VALUE ...] [--replicas N]
                    [--workers N [--max-restarts K]]
    keras-mtl evaluate --model DIR [--split test|validation]
    keras-mtl predict --model DIR --input FILE
    keras-mtl serve --model_name NAME --model_base_path DIR [TF Serving flags]
    keras-mtl config [--preset NAME | --config FILE] [--set KEY=VALUE ...]
    keras-mtl baseline [--preset NAME | --config FILE] [--set ...] [--seeds 0 1 2]
    keras-mtl tune [--preset NAME | --config FILE] [--set ...] [--tuner NAME]
                   [--max-trials N] [--objective NAME] [--overwrite]
    keras-mtl diagnose (--run-dir DIR | --model FILE.keras) [--output DIR]

A bad argument or config prints one line and exits with status 2.
"""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with what the user passed; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _add_config_arguments(parser):
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset", default=None, help="a named preset (default: shapes)"
    )
    source.add_argument("--config", default=None, help="a TOML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. train.epochs=3 or tasks.fine.weight=0.5",
    )


def _load_config(args):
    from keras_mtl.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "replicas", None) is not None:
        overrides.append(f"train.replicas={args.replicas}")
    return load_config(args.config or args.preset or "shapes", overrides)


def _cmd_config(args):
    print(_load_config(args).to_toml(), end="")


def _cmd_train(args):
    if args.workers is not None or args.max_restarts:
        from keras_mtl.multi_worker.command import launch_workers

        return launch_workers(args, _load_config(args))
    config = _load_config(args)
    import keras_mtl
    from keras_mtl import multi_worker
    from keras_mtl.multi_worker import report

    report.attach_to_launcher()
    strategy = keras_mtl.make_strategy(config.train)
    report.report(stage="ready")
    datasets = keras_mtl.load_datasets(config, replicas=strategy.num_replicas_in_sync)
    model, history, run_dir = keras_mtl.train(
        config, datasets=datasets, strategy=strategy, verbose=args.verbose
    )
    if not multi_worker.is_chief(strategy):  # The chief evaluates and exports.
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


def _cmd_evaluate(args):
    from keras_mtl.evaluation import evaluate_saved_model

    metrics = evaluate_saved_model(args.model, args.split, args.overrides)
    print(json.dumps(metrics, indent=1))


def _read_inputs(path, input_specs):
    import numpy as np

    from keras_mtl.saved_model import rows_to_columns

    input_names = sorted(input_specs)
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--input: no such file: {path}")
    if path.suffix == ".npy":
        if len(input_names) != 1:
            raise UsageError(
                f"--input: a .npy file feeds a model with one input; this one has "
                f"{sorted(input_names)}. Use JSON rows or CSV."
            )
        return {input_names[0]: np.load(path, allow_pickle=False)}
    if path.suffix == ".csv":
        import csv

        with open(path, newline="") as file:
            rows = list(csv.DictReader(file, skipinitialspace=True))
        columns = rows_to_columns(rows, input_names)
        for name, spec in input_specs.items():  # CSV holds text; "" is missing.
            if spec.dtype.is_floating and name in columns:
                columns[name] = [
                    float(v) if v.strip() else float("nan") for v in columns[name]
                ]
        return columns
    raise UsageError(f"--input: expected a .json, .csv or .npy file. Received: {path}")


def _predict_json(model, path):
    """A TF Serving request body (or a plain list of rows) through the same
    JSON codec as `keras-mtl serve`; returns the response body."""
    from keras_mtl.saved_model import SIGNATURE
    from keras_mtl.serving.json_predict import (
        predict_request_from_json,
        tensors_to_json,
    )
    from keras_mtl.serving.status import ServingError

    body = path.read_bytes()
    if body.lstrip().startswith(b"["):  # plain rows: TF Serving's "instances"
        body = b'{"instances": ' + body + b"}"

    def input_infos(signature_name):
        if (signature_name or SIGNATURE) not in model.signature_inputs:
            raise UsageError(
                f"--input: the model has no signature {signature_name!r}; it has "
                f"{sorted(model.signature_inputs)}."
            )
        return model.signature_inputs[signature_name or SIGNATURE]

    try:
        request = predict_request_from_json(body, input_infos)
        if (request.signature_name or SIGNATURE) == SIGNATURE:
            outputs = model.predict(request.inputs)
        else:
            outputs = model.run(request.inputs, request.signature_name)
        return tensors_to_json(outputs, request.format)
    except ServingError as error:
        raise UsageError(f"--input {path}: {error.message}") from None


def _cmd_predict(args):
    from keras_mtl.saved_model import LoadedModel
    from keras_mtl.serving.json_predict import ROW, tensors_to_json

    model = LoadedModel(args.model)
    path = Path(args.input)
    if path.is_file() and path.suffix not in (".npy", ".csv"):
        print(_predict_json(model, path).decode())
        return
    outputs = model.predict(_read_inputs(args.input, model.input_specs))
    print(tensors_to_json(outputs, ROW).decode())


def _cmd_diagnose(args):
    import keras_mtl
    from keras_mtl import plots
    from keras_mtl.diagnostics import GradientReport

    history = {}
    if args.run_dir:
        run_dir = Path(args.run_dir)
        if not (run_dir / "config.toml").is_file():
            raise UsageError(
                f"--run-dir: no config.toml in {run_dir}; expected a run "
                "directory written by keras-mtl train, such as runs/shapes."
            )
        config = keras_mtl.load_config(str(run_dir / "config.toml"), args.overrides)
        if (run_dir / "history.json").is_file():
            history = json.loads((run_dir / "history.json").read_text())
        model_path = run_dir / "checkpoints" / "best.keras"
        output = Path(args.output or run_dir / "diagnostics")
    else:
        model_path = Path(args.model)
        # A checkpoint of `keras-mtl train` sits in <run>/checkpoints/.
        run_config = model_path.parent.parent / "config.toml"
        if run_config.is_file() and not (args.config or args.preset):
            config = keras_mtl.load_config(str(run_config), args.overrides)
        else:
            config = _load_config(args)
        output = Path(args.output or "diagnostics")
    tasks = config.task_names
    written = []
    if f"grad_norm_trunk_{tasks[0]}" in history:
        report = GradientReport.from_logs(
            {key: values[-1] for key, values in history.items()}, tasks
        )
        title = f"Gradient flow of {config.name!r} after epoch {len(history['loss'])}"
        written = plots.plot_gradient_history(
            history,
            tasks,
            output / "gradient_history",
            title=f"Gradient diagnostics of {config.name!r} over training",
        )
    else:
        report = _measure_gradients(model_path, config)
        title = (
            f"Gradient flow of {config.name!r} ({model_path.name}), "
            "one validation batch"
        )
    written = (
        plots.plot_gradient_flow(report, output / "gradient_flow", title) + written
    )
    print("\n".join(str(path) for path in written))


def _measure_gradients(model_path, config):
    import keras

    import keras_mtl
    from keras_mtl.diagnostics import diagnostic_batch

    if model_path.suffix != ".keras" or not model_path.is_file():
        raise UsageError(
            "--model: expected a .keras file such as "
            f"runs/{config.name}/checkpoints/best.keras (a SavedModel keeps no "
            f"blocks to measure). Received: {model_path}"
        )
    model = keras.models.load_model(model_path)
    datasets = keras_mtl.load_datasets(config)
    return keras_mtl.diagnose_gradients(model, diagnostic_batch(datasets))


def build_parser():
    parser = _Parser(prog="keras-mtl", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )

    train = commands.add_parser("train", help="train, evaluate and export a model")
    _add_config_arguments(train)
    train.add_argument("--replicas", type=int, help="same as --set train.replicas=N")
    train.add_argument(
        "--no-export", action="store_true", help="skip the SavedModel export"
    )
    train.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras fit verbosity"
    )
    from keras_mtl.multi_worker.command import add_launcher_arguments

    add_launcher_arguments(train)
    train.set_defaults(run=_cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="per-task test metrics of a SavedModel"
    )
    evaluate.add_argument(
        "--model", required=True, help="a SavedModel version or model directory"
    )
    evaluate.add_argument("--split", choices=("test", "validation"), default="test")
    evaluate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the recorded config, e.g. data.path=/new/place.csv",
    )
    evaluate.set_defaults(run=_cmd_evaluate)

    predict = commands.add_parser("predict", help="predictions of a SavedModel as JSON")
    predict.add_argument(
        "--model", required=True, help="a SavedModel version or model directory"
    )
    predict.add_argument(
        "--input", required=True, help="JSON rows ({'instances': [...]}), CSV or .npy"
    )
    predict.set_defaults(run=_cmd_predict)

    serve = commands.add_parser(
        "serve", help="serve SavedModels over TF Serving's REST and gRPC APIs"
    )
    from keras_mtl.serving import command as serve_command

    serve_command.add_arguments(serve)
    diagnose = commands.add_parser(
        "diagnose",
        help="draw the gradient flow (PNG, SVG) of a run or a .keras model",
    )
    where = diagnose.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--run-dir", help="a run directory (runs/<name>): its logged diagnostics"
    )
    where.add_argument(
        "--model", help="a .keras file, measured on one validation batch"
    )
    _add_config_arguments(diagnose)
    diagnose.add_argument(
        "--output", help="where the figures go (default: <run-dir>/diagnostics)"
    )
    diagnose.set_defaults(run=_cmd_diagnose)

    config = commands.add_parser("config", help="print the resolved config as TOML")
    _add_config_arguments(config)
    config.set_defaults(run=_cmd_config)

    from keras_mtl import cli_tuning

    cli_tuning.add_commands(commands, _add_config_arguments)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("keras_mtl").setLevel(logging.INFO)
    try:
        args.run(args)
    except (UsageError, ValueError) as error:
        print(f"keras-mtl {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (RuntimeError, ArithmeticError) as error:
        print(f"keras-mtl {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
