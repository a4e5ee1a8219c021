"""What every `keras-mtl` command shares: usage errors and the config flags."""

import argparse
from pathlib import Path

EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with what the user passed; printed as one line."""


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def add_config_arguments(parser):
    """Adds `--preset NAME | --config FILE` and repeatable `--set KEY=VALUE`."""
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


def load_config_from_args(args, extra_overrides=()):
    """The `Config` that `--preset`/`--config`, `--set` and `--replicas` describe.

    `--preset` names a preset and `--config` a file: neither is taken for the
    other, whatever lies in the current directory. `extra_overrides` (e.g.
    `tuning.tuner=random` from `--tuner`) apply after the `--set` ones.
    """
    from keras_mtl.config.loading import list_presets, load_config_file, load_preset

    overrides = [*args.overrides, *extra_overrides]
    if getattr(args, "replicas", None) is not None:
        overrides.append(f"train.replicas={args.replicas}")
    if args.config is None:
        return load_preset(args.preset or "shapes", overrides)
    path = Path(args.config)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "does not exist"
        raise UsageError(
            f"--config {args.config}: {problem}; expected a TOML file. A preset "
            f"is named with --preset NAME, NAME one of {list_presets()}."
        )
    return load_config_file(path, overrides)


def check_output_dirs(config, *, run_dir=True, export=True):
    """Refuses an unwritable run directory or export directory before a run.

    Raises:
        ValueError: Naming the key (`train.run_dir` or `export.base_dir`).
    """
    from keras_mtl.config import resolve_path
    from keras_mtl.run_directory import check_writable_dir, run_dir_for

    if run_dir:
        check_writable_dir(run_dir_for(config), "train.run_dir", config.train.run_dir)
    if export:
        base_dir = config.export.base_dir
        model_dir = resolve_path(base_dir) / config.name
        check_writable_dir(model_dir, "export.base_dir", base_dir)
