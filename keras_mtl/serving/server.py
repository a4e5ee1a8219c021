"""`ModelServer`: the models, the REST and gRPC fronts, started and stopped.

What `keras-mtl serve` runs, and what tests and notebooks start in-process.
Like `tensorflow_model_server` it loads the models that are there before it
opens its ports, then keeps polling their base paths.
"""

import gc
import logging
import threading
import time

import numpy as np
import tensorflow as tf

from keras_mtl.serving import inference, json_numeric
from keras_mtl.serving.byte_budget import ByteBudget
from keras_mtl.serving.http_server import HttpServer
from keras_mtl.serving.metrics import Metrics
from keras_mtl.serving.model_config import MonitoringConfig
from keras_mtl.serving.predictor import Predictor
from keras_mtl.serving.protocol import JSON, RestApi, error_body
from keras_mtl.serving.registry import ModelRegistry
from keras_mtl.serving.warmup import replay_warmup_records, warmup_examples

logger = logging.getLogger("keras_mtl.serving")


def warmup_inputs(specs, batch_size, example=None):
    """Zeros (or empty strings) shaped like `specs`, with `batch_size` rows;
    or, given `example` (a warm-up record's inputs for these specs), its first
    row repeated: an input such as encoded image bytes fails on "" ."""
    if example is not None and sorted(example) == sorted(specs):
        return {
            name: np.repeat(np.asarray(value)[:1], batch_size, axis=0)
            for name, value in example.items()
        }
    inputs = {}
    for name, spec in specs.items():
        dims = spec.shape.as_list() if spec.shape.rank is not None else [None]
        shape = [batch_size] + [1 if d is None else d for d in dims[1:]]
        if spec.dtype.name == "string":
            inputs[name] = np.full(shape, b"", dtype=object)
        else:
            inputs[name] = np.zeros(shape, dtype=spec.dtype.as_numpy_dtype)
    return inputs


def set_thread_pools(intra_op=0, inter_op=0):
    """Sizes TensorFlow's thread pools, as `tensorflow_model_server`'s
    `--tensorflow_intra_op_parallelism` and `--tensorflow_inter_op_parallelism`
    do; 0 leaves the size to TensorFlow.

    Call it before TensorFlow runs anything: the pools are made once per
    process. One inter-op thread runs a small model's ops without waking a
    pool after each request (see `docs/serving.md#speed`).

    Returns:
        (intra_op, inter_op) as TensorFlow now has them.
    """
    for flag, value in (("intra", intra_op), ("inter", inter_op)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(
                f"--tensorflow_{flag}_op_parallelism must be 0 (TensorFlow "
                f"picks) or a number of threads. Received: {value!r}"
            )
    threading_config = tf.config.threading
    try:
        if intra_op != threading_config.get_intra_op_parallelism_threads():
            threading_config.set_intra_op_parallelism_threads(intra_op)
        if inter_op != threading_config.get_inter_op_parallelism_threads():
            threading_config.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        raise RuntimeError(
            "TensorFlow's thread pools are made when it first runs: set "
            "--tensorflow_intra_op_parallelism and "
            "--tensorflow_inter_op_parallelism (set_thread_pools) before any "
            "model is loaded in this process."
        ) from None
    sizes = (
        threading_config.get_intra_op_parallelism_threads(),
        threading_config.get_inter_op_parallelism_threads(),
    )
    logger.info(
        "TensorFlow thread pools: intra-op %s, inter-op %s",
        *(size or "auto" for size in sizes),
    )
    return sizes


def grpc_available():
    try:
        import grpc  # noqa: F401
        import tensorflow_serving.apis.prediction_service_pb2_grpc  # noqa: F401
    except ImportError:
        return False
    return True


def _model_health(registry):
    """A `ModelHealth` for the gRPC port, or None without grpcio-health-checking."""
    try:
        from keras_mtl.serving.health import ModelHealth
    except ImportError:
        logger.warning(
            "No grpc.health.v1 service: it needs grpcio-health-checking "
            '(pip install "keras-mtl[serving]").'
        )
        return None
    return ModelHealth(registry)


class ModelServer:
    """Serves SavedModels over TF Serving's REST and gRPC APIs.

    Args:
        configs: `ServedModelConfig`s of the models to serve.
        rest_api_port: REST port; 0 disables REST (as in TF Serving).
        grpc_port: gRPC port; 0 disables gRPC. Without the `serving` extra
            gRPC is off and a warning says so.
        host: Address both fronts bind (default loopback only).
        batching: `BatchingParameters`, or None for no batching.
        monitoring: `MonitoringConfig`; Prometheus metrics when enabled.
        poll_wait_seconds: Seconds between looks for new versions.
        rest_api_num_threads: REST requests run at once (worker threads);
            idle and slow connections hold none.
        rest_api_timeout_in_ms: How long a request may wait for its batch.
        max_request_bytes: The largest REST request body (413 above it).
        rest_api_max_connections: Open REST connections; one more is
            answered 503 and closed.
        max_bytes_in_flight: Bytes that requests may hold at once: REST
            bodies being received or served, gRPC inputs as decoded. A
            request that does not fit is answered UNAVAILABLE (503).
        max_request_tensor_bytes: The largest decoded size of a gRPC
            request's input tensors (shape times dtype size, whatever the
            TensorProto carries); RESOURCE_EXHAUSTED above it.
        drain_timeout_seconds: On `stop()`, how long requests in flight may
            take to finish after the ports stop accepting.
        grpc_max_threads: gRPC worker threads. With batching, `Predict`
            waits for its batch on the gRPC server's event loop and holds no
            thread; the threads run the other methods.
        enable_model_warmup: Before a new version serves, replay its
            `assets.extra/tf_serving_warmup_requests` (as TF Serving does),
            then run it at the batch sizes batching will use.
        num_request_iterations_for_warmup: Runs of each warm-up record.
        ssl_config: A `tls.SSLConfig` (TF Serving's `--ssl_config_file`):
            both ports serve TLS, and with `client_verify` refuse clients
            without a certificate signed by `custom_ca`; None: plaintext.
        max_num_load_retries: Retries of a version that fails to load.
        enable_signature_method_name_check: Check SignatureDef method names
            as TF Serving's flag of that name does: Predict runs only
            predict, classify and regress signatures, Classify only
            `tensorflow/serving/classify` ones, Regress only regress ones.
            Off (TF Serving's default), Classify and Regress run any
            signature of their shape (one `inputs` tensor of serialized
            Examples; `classes` and/or `scores`, or one `outputs`), such as
            one `tf.saved_model.save` wrote with the predict method name.
        freeze_gc: Move what is loaded out of the garbage collector's sight
            (`gc.freeze`). TensorFlow and Keras keep millions of objects; a
            large JSON body allocates enough containers to trigger full
            collections that walk them all (measured: a 1.6 MB request took
            250-440 ms instead of 45-70 ms). Unloading a version unfreezes,
            collects and freezes again, so nothing leaks.

    Example:

    ```python
    with ModelServer([ServedModelConfig("shapes", "saved_models/shapes")]) as server:
        print(server.rest_url)  # http://127.0.0.1:8501
    ```
    """

    def __init__(
        self,
        configs,
        *,
        rest_api_port=8501,
        grpc_port=8500,
        host="127.0.0.1",
        batching=None,
        monitoring=None,
        poll_wait_seconds=1.0,
        rest_api_num_threads=64,
        rest_api_timeout_in_ms=30000,
        max_request_bytes=64 << 20,
        rest_api_max_connections=512,
        max_bytes_in_flight=128 << 20,
        max_request_tensor_bytes=64 << 20,
        drain_timeout_seconds=5.0,
        grpc_max_threads=32,
        enable_model_warmup=True,
        num_request_iterations_for_warmup=1,
        max_num_load_retries=5,
        freeze_gc=True,
        ssl_config=None,
        enable_signature_method_name_check=False,
    ):
        if max_bytes_in_flight < max_request_bytes:
            raise ValueError(
                "max_bytes_in_flight must hold at least one request of "
                "max_request_bytes. Received: "
                f"max_bytes_in_flight={max_bytes_in_flight}, "
                f"max_request_bytes={max_request_bytes}"
            )
        self.host = host
        self.batching = batching
        self.warmup_iterations = num_request_iterations_for_warmup
        self.monitoring = monitoring or MonitoringConfig()
        self.metrics = Metrics() if self.monitoring.prometheus_enabled else None
        self.registry = ModelRegistry(
            configs,
            poll_wait_seconds=poll_wait_seconds,
            warmup=self._warmup if enable_model_warmup else None,
            max_num_load_retries=max_num_load_retries,
            metrics=self.metrics,
            on_change=self._changed,
        )
        self._freeze_gc = freeze_gc
        self.ssl_config = ssl_config
        self.health = None  # a ModelHealth while gRPC serves
        self.predictor = Predictor(
            self.registry,
            batching,
            self.metrics,
            method_name_check=enable_signature_method_name_check,
        )
        timeout = rest_api_timeout_in_ms / 1000 if rest_api_timeout_in_ms > 0 else None
        self.rest_api = RestApi(self.predictor, self.metrics, timeout)
        self._rest_port, self._grpc_port = rest_api_port, grpc_port
        self._rest_threads = rest_api_num_threads
        self._max_request_bytes = max_request_bytes
        self._max_connections = rest_api_max_connections
        self.budget = ByteBudget(max_bytes_in_flight)
        self._max_tensor_bytes = max_request_tensor_bytes
        self.drain_timeout_seconds = drain_timeout_seconds
        self._grpc_threads = grpc_max_threads
        self._http = self._http_thread = self._grpc = None
        self.rest_port = self.grpc_port = None

    @property
    def rest_url(self):
        if not self.rest_port:
            return None
        scheme = "https" if self.ssl_config else "http"
        return f"{scheme}://{self.host}:{self.rest_port}"

    @property
    def grpc_target(self):
        return f"{self.host}:{self.grpc_port}" if self.grpc_port else None

    def _warmup(self, servable):
        """Replays the version's warm-up records, then runs each signature at
        the batch sizes batching will use; returns what it did, for the log."""
        calls = replay_warmup_records(
            servable,
            self.predictor.predict,
            self.warmup_iterations,
            lambda servable, name, method, serialized: inference.classify_regress(
                self.predictor, servable, name, method, serialized
            ),
        )
        sizes = self.batching.warmup_batch_sizes() if self.batching else [1]
        examples = warmup_examples(servable.path, servable.model.signature_inputs)
        for key, specs in servable.model.signature_inputs.items():
            if not specs:
                continue
            for size in sizes:
                inputs = warmup_inputs(specs, size, examples.get(key))
                try:
                    servable.model.run(inputs, key)
                except tf.errors.InvalidArgumentError as error:
                    # Zeros are no valid input of this signature (an image
                    # decoder, say) and no warm-up record shows one: TF
                    # Serving runs no such warm-up either.
                    logger.info(
                        "Not warming up signature %r of %s with zeros: %s",
                        key,
                        servable.path,
                        error.message.splitlines()[0],
                    )
                    break
        records = f"{calls} warm-up record calls and " if calls else ""
        return f"{records}batch sizes {sizes}"

    def _changed(self, change):
        """After a version is swapped in ("load") or out ("unload")."""
        if self.health is not None:
            self.health.update()
        if not self._freeze_gc:
            return
        if change == "unload":  # let the unloaded version's cycles be collected
            gc.unfreeze()
            gc.collect()
        gc.freeze()

    def app(self, method, target, body):
        """The HTTP request function: metrics page or REST API."""
        if self.metrics and target.split("?")[0] == self.monitoring.prometheus_path:
            if method != "GET":
                return 405, error_body(f"Use GET for {target}"), JSON
            return 200, self.metrics.render().encode(), "text/plain; version=0.0.4"
        status, payload = self.rest_api.handle(method, target, body)
        return status, payload, JSON

    def start(self):
        """Loads the models, then opens the ports. Returns self."""
        self.registry.start()
        try:
            if self._grpc_port:
                self._start_grpc()
            if self._rest_port:
                self._http = HttpServer(
                    (self.host, self._rest_port),
                    self.app,
                    num_threads=self._rest_threads,
                    max_body_bytes=self._max_request_bytes,
                    max_connections=self._max_connections,
                    budget=self.budget,
                    ssl_context=self.ssl_config.ssl_context()
                    if self.ssl_config
                    else None,
                )
                self.rest_port = self._http.server_address[1]
                self._http_thread = threading.Thread(
                    target=self._http.serve_forever,
                    kwargs={"poll_interval": 0.2},
                    name="keras-mtl-rest",
                    daemon=True,
                )
                self._http_thread.start()
                logger.info(
                    "Exporting HTTP/REST API at:%s:%d ...", self.host, self.rest_port
                )
                logger.info(json_numeric.array_reader())
        except BaseException:
            self.stop()
            raise
        return self

    def _start_grpc(self):
        if not grpc_available():
            logger.warning(
                "gRPC is off: it needs the tensorflow-serving-api protos. "
                'pip install "keras-mtl[serving]" to serve gRPC on --port.'
            )
            return
        from keras_mtl.serving.grpc_server import make_grpc_server

        target = f"{self.host}:{self._grpc_port}"
        self.health = _model_health(self.registry)
        self._grpc = make_grpc_server(
            self.predictor,
            target,
            self._grpc_threads,
            self.metrics,
            budget=self.budget,
            max_tensor_bytes=self._max_tensor_bytes,
            credentials=self.ssl_config.grpc_credentials() if self.ssl_config else None,
            health=self.health,
        )
        self.grpc_port = self._grpc_port
        logger.info("Running gRPC ModelServer at %s ...", target)

    def stop(self):
        """Stops accepting on both ports, lets the requests in flight finish
        (up to `drain_timeout_seconds`), then stops batching and polling."""
        drain = max(0.0, self.drain_timeout_seconds)
        deadline = time.monotonic() + drain
        grpc_stopped = None
        if self.health is not None:
            self.health.shutdown()  # NOT_SERVING for the probes from now on
        if self._grpc is not None:
            grpc_stopped = self._grpc.stop(grace=drain)  # refuses new calls now
            self._grpc = None
        if self._http is not None:
            self._http.shutdown(drain_seconds=drain)
            self._http.server_close()
            self._http = None
        if grpc_stopped is not None:
            grpc_stopped.wait(max(0.0, deadline - time.monotonic()) + 1.0)
        self.predictor.stop()
        self.registry.stop()
        if self._freeze_gc:
            gc.unfreeze()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
