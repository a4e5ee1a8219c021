"""What every `keras-mtl` command shares: usage errors and the config flags."""

import argparse

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

    `extra_overrides` (e.g. `tuning.tuner=random` from `--tuner`) apply after
    the `--set` ones.
    """
    from keras_mtl.config import load_config

    overrides = [*args.overrides, *extra_overrides]
    if getattr(args, "replicas", None) is not None:
        overrides.append(f"train.replicas={args.replicas}")
    return load_config(args.config or args.preset or "shapes", overrides)
