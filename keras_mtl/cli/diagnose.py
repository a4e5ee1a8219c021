"""`keras-mtl diagnose`: gradient-flow figures of a run or a `.keras` model.

keras-mtl diagnose (--run-dir DIR | --model FILE.keras) [--output DIR]
"""

import json
from pathlib import Path

from keras_mtl.cli.common import (
    UsageError,
    add_config_arguments,
    load_config_from_args,
)


def _cmd_diagnose(args):
    from keras_mtl.config.loading import load_config_file

    history = {}
    if args.run_dir:
        run_dir = Path(args.run_dir)
        if not (run_dir / "config.toml").is_file():
            raise UsageError(
                f"--run-dir: no config.toml in {run_dir}; expected a run "
                "directory written by keras-mtl train, such as runs/shapes."
            )
        config = load_config_file(run_dir / "config.toml", args.overrides)
        if (run_dir / "history.json").is_file():
            history = json.loads((run_dir / "history.json").read_text())
        model_path = run_dir / "checkpoints" / "best.keras"
        output = Path(args.output or run_dir / "diagnostics")
    else:
        model_path = Path(args.model)
        # A checkpoint of `keras-mtl train` sits in <run>/checkpoints/.
        run_config = model_path.parent.parent / "config.toml"
        if run_config.is_file() and not (args.config or args.preset):
            config = load_config_file(run_config, args.overrides)
        else:
            config = load_config_from_args(args)
        _check_keras_file(model_path, config)
        output = Path(args.output or "diagnostics")
    # TensorFlow starts here, once the arguments and the config are good.
    from keras_mtl import plots
    from keras_mtl.diagnostics import GradientReport

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


def _check_keras_file(model_path, config):
    if model_path.suffix != ".keras" or not model_path.is_file():
        raise UsageError(
            "--model: expected a .keras file such as "
            f"runs/{config.name}/checkpoints/best.keras (a SavedModel keeps no "
            f"blocks to measure). Received: {model_path}"
        )


def _measure_gradients(model_path, config):
    import keras

    import keras_mtl
    import keras_mtl.models  # noqa: F401  (registers the layers that the file names)
    from keras_mtl.diagnostics import diagnostic_batch

    _check_keras_file(model_path, config)
    model = keras.models.load_model(model_path)
    datasets = keras_mtl.load_datasets(config)
    return keras_mtl.diagnose_gradients(model, diagnostic_batch(datasets))


def add_commands(commands):
    """Adds `diagnose` to the `keras-mtl` sub-command parsers."""
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
    add_config_arguments(diagnose)
    diagnose.add_argument(
        "--output", help="where the figures go (default: <run-dir>/diagnostics)"
    )
    diagnose.set_defaults(run=_cmd_diagnose)
