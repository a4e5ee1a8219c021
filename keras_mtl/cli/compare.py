"""`keras-mtl compare`: weighting methods against equal weights and single-task
models, over paired seeds.

keras-mtl compare [--preset NAME | --config FILE] [--set KEY=VALUE ...]
                  [--methods static,uncertainty,...] [--seeds 5]
                  [--fixed-split] [--no-protocol] [--no-trees]
                  [--split test|validation] [--out DIR] [--json]
"""

import json
import sys
from pathlib import Path

from keras_mtl.cli.common import UsageError, add_config_arguments, check_output_dirs


def _methods(text):
    from keras_mtl.config import weighting_methods

    if text is None or text == "all":
        return list(weighting_methods.names())
    methods = [name.strip() for name in text.split(",") if name.strip()]
    known = weighting_methods.names()
    unknown = [name for name in methods if name not in known]
    if unknown or not methods:
        raise UsageError(
            f"--methods: expected comma-separated weighting methods from {list(known)} "
            f"(or 'all'). Received: {text!r}"
        )
    return methods


def _cmd_compare(args):
    from keras_mtl.cli.common import load_config_from_args
    from keras_mtl.evaluation.comparison import PROTOCOL_OVERRIDES

    if args.seeds < 1:
        raise UsageError(
            f"--seeds: expected how many seeds, at least 1 (5 or more to tell "
            f"settings apart). Received: {args.seeds}"
        )
    methods = _methods(args.methods)
    if not args.no_protocol:
        # The protocol first: the user's --set wins over it.
        args.overrides = [*PROTOCOL_OVERRIDES, *args.overrides]
    config = load_config_from_args(args)  # Before TensorFlow starts.
    check_output_dirs(config, export=False)
    from keras_mtl.evaluation.comparison import compare_weightings
    from keras_mtl.run_directory import run_dir_for

    comparison = compare_weightings(
        config,
        methods,
        seeds=list(range(args.seeds)),
        split=args.split,
        resample_split=not args.fixed_split,
        gradient_boosting=False if args.no_trees else "auto",
        verbose=args.verbose,
    )
    out = Path(args.out) if args.out else run_dir_for(config) / "compare"
    written = comparison.save(out)
    for path in written:
        print(f"Wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(comparison.to_dict(), indent=1))
    else:
        print(comparison.to_markdown(), end="")


def add_commands(commands):
    """Adds `compare` to the `keras-mtl` sub-command parsers."""
    compare = commands.add_parser(
        "compare",
        help="weighting methods vs equal weights and single-task models, paired seeds",
    )
    add_config_arguments(compare)
    compare.add_argument(
        "--methods",
        help="comma-separated weighting methods, or 'all' (default: all)",
    )
    compare.add_argument(
        "--seeds", type=int, default=5, help="paired seeds 0..N-1 (default 5)"
    )
    compare.add_argument(
        "--fixed-split",
        action="store_true",
        help="keep data.seed's split for every seed (default: seed s sets data.seed)",
    )
    compare.add_argument(
        "--no-protocol",
        action="store_true",
        help="train as the config says, without early stopping on "
        "val_unweighted_loss and the plateau schedule",
    )
    compare.add_argument(
        "--no-trees",
        action="store_true",
        help="no gradient-boosted trees row (CSV data only anyway)",
    )
    compare.add_argument("--split", choices=("test", "validation"), default="test")
    compare.add_argument(
        "--out", help="where the table, JSON and plot go (default: <run>/compare)"
    )
    compare.add_argument("--replicas", type=int, help="same as --set train.replicas=N")
    compare.add_argument("--json", action="store_true", help="print JSON")
    compare.add_argument("--verbose", type=int, choices=(0, 1, 2), default=0)
    compare.set_defaults(run=_cmd_compare)
