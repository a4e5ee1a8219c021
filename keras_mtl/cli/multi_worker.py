"""The `--workers` options of `keras-mtl train`: a local cluster from the CLI.

    keras-mtl train --preset shapes --workers 2 --max-restarts 1

Each worker runs the same `keras-mtl train` arguments with
`train.strategy=multi_worker`; the chief's export path is printed last.
"""

import sys


def add_launcher_arguments(parser):
    """Adds --workers, --max-restarts, --startup-timeout and --timeout."""
    group = parser.add_argument_group(
        "several workers on this machine (MultiWorkerMirroredStrategy)"
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="start N local worker processes on 127.0.0.1 and print the chief's export",
    )
    group.add_argument(
        "--max-restarts",
        type=int,
        default=0,
        metavar="K",
        help="restart the whole cluster up to K times when a worker dies; it "
        "resumes after the last finished epoch (default 0)",
    )
    group.add_argument(
        "--startup-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long every worker may take to join the cluster (default 300)",
    )
    group.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="stop every worker when the job takes longer (default: no limit)",
    )


def launch_workers(args, config):
    """Runs `keras-mtl train` as `args.workers` local workers; prints the export.

    Raises:
        ValueError: A bad option (the CLI prints it and exits with 2).
        RuntimeError: The cluster failed (exit status 1).
    """
    from keras_mtl.config import resolve_path
    from keras_mtl.multi_worker.launcher import ClusterError, LocalCluster

    if args.workers is None:
        raise ValueError(
            "--max-restarts restarts a local cluster: it needs --workers N. On "
            "several machines, restarts are the cluster manager's job."
        )
    for flag, value, valid, expected in (
        ("--workers", args.workers, args.workers >= 1, ">= 1"),
        ("--max-restarts", args.max_restarts, args.max_restarts >= 0, ">= 0"),
        ("--startup-timeout", args.startup_timeout, args.startup_timeout > 0, "> 0"),
        ("--timeout", args.timeout, args.timeout is None or args.timeout > 0, "> 0"),
    ):
        if not valid:
            raise ValueError(f"{flag} must be {expected}. Received: {flag}={value}")
    if config.train.batch_size % args.workers:
        raise ValueError(
            f"train.batch_size={config.train.batch_size} must be divisible by "
            f"--workers={args.workers} so that every worker gets an equal share."
        )
    worker_args = ["--config", args.config] if args.config else []
    worker_args += ["--preset", args.preset] if args.preset else []
    for override in [*args.overrides, "train.strategy=multi_worker"]:
        worker_args += ["--set", override]
    if args.replicas is not None:
        worker_args += ["--replicas", str(args.replicas)]
    # One line per epoch: progress bars are unreadable through a pipe.
    worker_args += ["--verbose", str(min(2 * args.verbose, 2))]
    worker_args += ["--no-export"] if args.no_export else []
    cluster = LocalCluster(
        worker_args,
        args.workers,
        resolve_path(config.train.run_dir) / config.name,
        max_restarts=args.max_restarts,
        startup_timeout=args.startup_timeout,
        timeout=args.timeout,
    )
    try:
        result = cluster.run()
    except ClusterError as error:
        raise RuntimeError(str(error)) from None
    except KeyboardInterrupt as error:
        print(f"keras-mtl train: stopped every worker: {error}", file=sys.stderr)
        raise SystemExit(130) from None
    if result.export_path:
        print(result.export_path)
