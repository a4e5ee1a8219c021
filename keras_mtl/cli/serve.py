"""`keras-mtl serve`: `tensorflow_model_server`'s flags, for what it implements.

    keras-mtl serve --model_name=shapes --model_base_path=saved_models/shapes
    keras-mtl serve --model_config_file=models.config --enable_batching \\
        --batching_parameters_file=batching.config

Flags are spelled as TF Serving spells them and take its `--flag=value` and
`--flag=true|false` forms, so a command line written for one runs the other.
The server binds 127.0.0.1 unless `--rest_api_host` says otherwise, logs one
line per load and unload, and stops cleanly on SIGINT and SIGTERM.
"""

import argparse
import logging
import signal
import threading
from pathlib import Path

logger = logging.getLogger("keras_mtl.serving")


def _bool(text):
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, received {text!r}")


def _threads(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"expected 0 (TensorFlow picks) or a number of threads, received {text!r}"
        )
    return value


def add_commands(commands):
    """Adds `serve` to the `keras-mtl` sub-command parsers."""
    parser = commands.add_parser(
        "serve", help="serve SavedModels over TF Serving's REST and gRPC APIs"
    )
    flag = parser.add_argument
    flag("--model_name", default="default", help="name of the model (default)")
    flag("--model_base_path", help="directory of integer version directories")
    flag(
        "--model_config_file",
        help="TF Serving model_config_list text proto: several models, version "
        "policies, labels (--model_name and --model_base_path are then ignored)",
    )
    flag("--port", type=int, default=8500, help="gRPC port; 0 disables gRPC")
    flag("--rest_api_port", type=int, default=8501, help="REST port; 0 disables REST")
    flag(
        "--rest_api_host",
        default="127.0.0.1",
        help="address both ports bind (0.0.0.0 for every interface)",
    )
    _add_model_flags(flag)
    _add_rest_flags(flag)
    _add_limit_flags(flag)
    flag(
        "--grpc_max_threads",
        type=int,
        default=32,
        help="gRPC worker threads (with batching, Predict holds none)",
    )
    for kind, what in (("intra", "within one op"), ("inter", "between ops")):
        flag(
            f"--tensorflow_{kind}_op_parallelism",
            type=_threads,
            default=0,
            help=f"TensorFlow threads {what}; 0 lets TensorFlow pick",
        )
    flag(
        "--ssl_config_file",
        help="TF Serving SSLConfig text proto (server_key, server_cert, custom_ca, "
        "client_verify): TLS on the gRPC and REST ports",
    )
    parser.set_defaults(run=run)


def _add_model_flags(flag):
    """Versions, batching, monitoring and warm-up flags."""
    flag(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="seconds between looks for new versions; 0 looks once",
    )
    flag("--enable_batching", type=_bool, nargs="?", const=True, default=False)
    flag("--batching_parameters_file", help="TF Serving BatchingParameters text proto")
    flag(
        "--monitoring_config_file",
        help="TF Serving MonitoringConfig text proto (prometheus_config)",
    )
    flag(
        "--enable_model_warmup",
        type=_bool,
        nargs="?",
        const=True,
        default=True,
        help="replay assets.extra/tf_serving_warmup_requests before a version serves",
    )
    flag(
        "--num_request_iterations_for_warmup",
        type=int,
        default=1,
        help="runs of each warm-up record",
    )
    flag("--max_num_load_retries", type=int, default=5)
    flag(
        "--enable_signature_method_name_check",
        type=_bool,
        nargs="?",
        const=True,
        default=False,
        help="Classify / Regress / Predict only on signatures of their method name",
    )


def _add_rest_flags(flag):
    """The REST front's threads, timeout and body limit."""
    flag(
        "--rest_api_num_threads",
        type=int,
        default=64,
        help="REST requests run at the same time (idle connections hold none)",
    )
    flag(
        "--rest_api_timeout_in_ms",
        type=int,
        default=30000,
        help="how long a request may wait for its batch",
    )
    flag(
        "--rest_api_max_request_bytes",
        type=int,
        default=64 << 20,
        help="largest REST request body; larger ones get 413",
    )


def _add_limit_flags(flag):
    """keras-mtl's own bounds on connections, memory and shutdown."""
    flag(
        "--rest_api_max_connections",
        type=int,
        default=512,
        help="open REST connections; one more is answered 503 and closed",
    )
    flag(
        "--max_bytes_in_flight",
        type=int,
        default=128 << 20,
        help="bytes of requests held at once (REST bodies, decoded gRPC inputs); "
        "over it 503 UNAVAILABLE",
    )
    flag(
        "--max_request_tensor_bytes",
        type=int,
        default=64 << 20,
        help="largest decoded size of a gRPC request's input tensors; over it "
        "RESOURCE_EXHAUSTED",
    )
    flag(
        "--drain_timeout_seconds",
        type=float,
        default=5.0,
        help="on SIGTERM / SIGINT, how long requests in flight may take to finish",
    )


def server_from_args(args):
    """The `ModelServer` a parsed serve command line describes."""
    from keras_mtl.serving import model_config
    from keras_mtl.serving.batching import BatchingParameters
    from keras_mtl.serving.model_config import ServedModelConfig
    from keras_mtl.serving.server import ModelServer

    if args.model_config_file:
        configs = model_config.read_model_config_file(args.model_config_file)
    elif args.model_base_path:
        if not Path(args.model_base_path).is_dir():
            raise ValueError(
                "--model_base_path must be a directory of integer version "
                f"directories. Received: --model_base_path={args.model_base_path!r}"
            )
        configs = [ServedModelConfig(args.model_name, args.model_base_path)]
    else:
        raise ValueError(
            "Pass --model_base_path (with --model_name) or --model_config_file."
        )
    batching = None
    if args.enable_batching:
        batching = (
            model_config.read_batching_parameters_file(args.batching_parameters_file)
            if args.batching_parameters_file
            else BatchingParameters()
        )
    ssl_config = None
    if args.ssl_config_file:
        ssl_config = model_config.read_ssl_config_file(args.ssl_config_file)
    monitoring = None
    if args.monitoring_config_file:
        monitoring = model_config.read_monitoring_config_file(
            args.monitoring_config_file
        )
    return ModelServer(
        configs,
        rest_api_port=args.rest_api_port,
        grpc_port=args.port,
        host=args.rest_api_host,
        batching=batching,
        monitoring=monitoring,
        poll_wait_seconds=args.file_system_poll_wait_seconds,
        rest_api_num_threads=args.rest_api_num_threads,
        rest_api_timeout_in_ms=args.rest_api_timeout_in_ms,
        max_request_bytes=args.rest_api_max_request_bytes,
        rest_api_max_connections=args.rest_api_max_connections,
        max_bytes_in_flight=args.max_bytes_in_flight,
        max_request_tensor_bytes=args.max_request_tensor_bytes,
        drain_timeout_seconds=args.drain_timeout_seconds,
        grpc_max_threads=args.grpc_max_threads,
        enable_model_warmup=args.enable_model_warmup,
        num_request_iterations_for_warmup=args.num_request_iterations_for_warmup,
        max_num_load_retries=args.max_num_load_retries,
        ssl_config=ssl_config,
        enable_signature_method_name_check=args.enable_signature_method_name_check,
    )


def run(args):
    """Serves until SIGINT or SIGTERM, then stops the server and returns."""
    from keras_mtl.serving.server import set_thread_pools

    set_thread_pools(
        args.tensorflow_intra_op_parallelism, args.tensorflow_inter_op_parallelism
    )
    server = server_from_args(args)
    stop = threading.Event()
    previous = {
        number: signal.signal(number, lambda *_: stop.set())
        for number in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server.start()
        while not stop.wait(0.5):
            pass
        logger.info(
            "Stopping the model server: draining requests in flight (up to %g s)",
            args.drain_timeout_seconds,
        )
    finally:
        server.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
