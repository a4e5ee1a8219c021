"""`keras-mtl`: the parser of every command, and `main`."""

import logging
import sys

from keras_mtl.cli import compare, diagnose, saved_models, serve, train, tuning
from keras_mtl.cli.common import EXIT_USAGE, Parser, UsageError


def build_parser():
    """The `keras-mtl` parser: one sub-command parser per command."""
    from keras_mtl import cli

    parser = Parser(prog="keras-mtl", description=cli.__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    train.add_commands(commands)
    saved_models.add_commands(commands)
    serve.add_commands(commands)
    diagnose.add_commands(commands)
    tuning.add_commands(commands)
    compare.add_commands(commands)
    return parser


def main(argv=None):
    """Runs one `keras-mtl` command; returns its exit status.

    A bad argument or config value prints one line and returns 2; a failed
    run (`RuntimeError`, `ArithmeticError`) prints one line and returns 1.
    """
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
