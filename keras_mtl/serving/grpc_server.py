"""TF Serving's gRPC services: `PredictionService` and `ModelService`.

Built on the `tensorflow-serving-api` protos and stubs (the `serving` extra),
so the stock `prediction_service_pb2_grpc.PredictionServiceStub` works
against it. Predict, GetModelMetadata and GetModelStatus share the
`Predictor` with the REST API and give the same answers and the same errors
(as gRPC status codes). Classify, Regress and MultiInference run classify
and regress signatures on `tf.Example`s (`keras_mtl.serving.inference`);
HandleReloadConfigRequest answers UNIMPLEMENTED. Without batching the server
is grpcio's synchronous one; with batching it is a `grpc.aio` server whose
`Predict` awaits its batch on the event loop (`BatchingPredictionService`,
`AioServer`).
"""

import asyncio
import concurrent.futures
import contextlib
import threading
import time

import grpc
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from keras_mtl.saved_model import CLASSIFY_METHOD
from keras_mtl.serving import inference
from keras_mtl.serving.registry import ModelSpec
from keras_mtl.serving.status import Code, ServingError, invalid_argument
from keras_mtl.serving.tensor_proto import fill_tensor_proto, tensor_dims, to_ndarray
from keras_mtl.serving.tensor_size import check_decoded_size

SIGNATURE_DEF_FIELD = "signature_def"
MAX_MESSAGE_BYTES = 2**31 - 1  # TF Serving: builder.SetMaxMessageSize(kint32max)


def spec_from_proto(model_spec):
    """A `ModelSpec` from a `tensorflow.serving.ModelSpec` proto."""
    version = model_spec.version.value if model_spec.HasField("version") else None
    label = model_spec.version_label or None
    return ModelSpec(model_spec.name, version, label, model_spec.signature_name)


def _call(context, function, metrics=None, model_name="", api=""):
    """Runs `function()`; a ServingError becomes the call's status code."""
    start = time.perf_counter()
    error = None
    try:
        return function()
    except Exception as raised:
        error = _as_serving_error(raised)
    finally:
        _count(metrics, model_name, api, start, error)
    context.abort(grpc.StatusCode[error.code.name], error.message)


def _as_serving_error(error):
    if isinstance(error, ServingError):
        return error
    # a fault of ours, reported as INTERNAL
    return ServingError(Code.INTERNAL, f"{type(error).__name__}: {error}")


def _count(metrics, model_name, api, start, error):
    if metrics and model_name:
        metrics.count_request(model_name, error.code.name if error else "OK")
        metrics.observe_request(
            model_name, api, "GRPC", (time.perf_counter() - start) * 1e6
        )


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`tensorflow.serving.PredictionService` over a `Predictor`."""

    def __init__(self, predictor, metrics=None, budget=None, max_tensor_bytes=None):
        self.predictor = predictor
        self.metrics = metrics
        self.budget = budget
        self.max_tensor_bytes = max_tensor_bytes

    def Predict(self, request, context):
        return _call(
            context,
            lambda: self._predict(request, context),
            self.metrics,
            request.model_spec.name,
            "Predict",
        )

    def _predict(self, request, context):
        with self._decoded(request, context) as (spec, servable, arguments):
            outputs = self.predictor.predict(*arguments)
            return _predict_response(spec, servable, outputs)

    @contextlib.contextmanager
    def _decoded(self, request, context):
        """(spec, servable, the arguments of `Predictor.predict`) of a
        Predict request, its decoded size held in the budget until the block
        ends."""
        spec = spec_from_proto(request.model_spec)
        servable = self.predictor.servable(spec)
        dims = {alias: tensor_dims(tensor) for alias, tensor in request.inputs.items()}
        size = check_decoded_size(request.inputs, self.max_tensor_bytes, dims)
        with self._held(size):
            inputs, deadline = self._inputs(request, context, dims)
            filter_ = list(request.output_filter)
            yield (
                spec,
                servable,
                (servable, spec.signature_name, inputs, filter_, deadline),
            )

    @contextlib.contextmanager
    def _held(self, size):
        """`size` bytes held in the budget (when there is one) until the
        block ends."""
        if self.budget is not None:
            self.budget.reserve_or_raise(size)
        try:
            yield
        finally:
            if self.budget is not None:
                self.budget.release(size)

    @staticmethod
    def _inputs(request, context, dims):
        """(input name -> array, deadline as a `time.monotonic()` time or None);
        `dims`: input name -> its shape's sizes."""
        inputs = {}
        for alias, tensor in request.inputs.items():
            try:
                inputs[alias] = to_ndarray(tensor, dims[alias])
            except Exception:  # a TensorProto that does not parse
                raise invalid_argument(f"tensor parsing error: {alias}") from None
        return inputs, _deadline(context)

    def GetModelMetadata(self, request, context):
        return _call(context, lambda: self._metadata(request))

    def _metadata(self, request):
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported")
        servable = self.predictor.servable(spec_from_proto(request.model_spec))
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        if SIGNATURE_DEF_FIELD in request.metadata_field:
            signature_defs = get_model_metadata_pb2.SignatureDefMap()
            for key, signature_def in servable.model.signature_defs.items():
                signature_defs.signature_def[key].CopyFrom(signature_def)
            packed = any_pb2.Any()
            packed.Pack(signature_defs)
            response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(packed)
        return response

    def Classify(self, request, context):
        return _call(
            context,
            lambda: self._classify_regress(request, context, "classify"),
            self.metrics,
            request.model_spec.name,
            "Classify",
        )

    def Regress(self, request, context):
        return _call(
            context,
            lambda: self._classify_regress(request, context, "regress"),
            self.metrics,
            request.model_spec.name,
            "Regress",
        )

    def MultiInference(self, request, context):
        name = request.tasks[0].model_spec.name if request.tasks else ""
        return _call(
            context,
            lambda: self._multi_inference(request, context),
            self.metrics,
            name,
            "MultiInference",
        )

    def _classify_regress(self, request, context, method):
        spec = spec_from_proto(request.model_spec)
        servable = self.predictor.servable(spec)
        with self._examples(request, context) as (serialized, deadline):
            key, answer = inference.classify_regress(
                self.predictor,
                servable,
                spec.signature_name,
                method,
                serialized,
                deadline,
            )
        if method == "classify":
            response = classification_pb2.ClassificationResponse()
            _fill_classification(response.result, answer)
        else:
            response = regression_pb2.RegressionResponse()
            _fill_regression(response.result, answer)
        _fill_model_spec(response.model_spec, servable, key)
        return response

    def _multi_inference(self, request, context):
        inference.check_tasks(request)
        with self._examples(request, context) as (serialized, deadline):
            servable, answers = inference.multi_inference(
                self.predictor,
                request,
                serialized,
                lambda model_spec: self.predictor.servable(spec_from_proto(model_spec)),
                deadline,
            )
        response = inference_pb2.MultiInferenceResponse()
        for task, key, answer in answers:
            result = response.results.add()
            _fill_model_spec(result.model_spec, servable, key)
            if task.method_name == CLASSIFY_METHOD:
                _fill_classification(result.classification_result, answer)
            else:
                _fill_regression(result.regression_result, answer)
        return response

    @contextlib.contextmanager
    def _examples(self, request, context):
        """(the request's serialized Examples, deadline), their size held in
        the budget until the block ends."""
        serialized = inference.serialize_input(request.input)
        with self._held(sum(len(example) for example in serialized)):
            yield serialized, _deadline(context)


def _deadline(context):
    """The call's deadline as a `time.monotonic()` time, or None."""
    remaining = context.time_remaining()
    return time.monotonic() + remaining if remaining is not None else None


def _fill_model_spec(model_spec, servable, key):
    model_spec.name = servable.name
    model_spec.version.value = servable.version
    model_spec.signature_name = key


def _fill_classification(result, answer):
    """A `ClassificationResult` from an `inference.Classification`."""
    for row in range(answer.rows):
        classes = result.classifications.add().classes
        for column in range(answer.width):
            item = classes.add()
            if answer.labels is not None:
                item.label = answer.labels[row][column].decode("utf-8", "replace")
            if answer.scores is not None:
                item.score = float(answer.scores[row, column])


def _fill_regression(result, values):
    for value in values.tolist():
        result.regressions.add().value = value


def _predict_response(spec, servable, outputs):
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = spec.signature_name or "serving_default"
    for name, value in outputs.items():
        fill_tensor_proto(response.outputs[name], value)
    return response


class BatchingPredictionService(PredictionService):
    """`PredictionService` for a server with batching, on `grpc.aio`.

    `Predict` runs on the server's event loop: it decodes and checks the
    request there, queues it with the batch scheduler and awaits its rows,
    so that no thread waits for a batch and one thread does the Python work
    of every request. The other methods are the synchronous ones, which the
    aio server runs on its thread pool.
    """

    async def Predict(self, request, context):
        start = time.perf_counter()
        error = None
        try:
            return await self._predict_async(request, context)
        except Exception as raised:
            error = _as_serving_error(raised)
        finally:
            _count(self.metrics, request.model_spec.name, "Predict", start, error)
        await context.abort(grpc.StatusCode[error.code.name], error.message)

    async def _predict_async(self, request, context):
        with self._decoded(request, context) as (spec, servable, arguments):
            outputs = await self.predictor.predict_async(*arguments)
            return _predict_response(spec, servable, outputs)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService`: GetModelStatus."""

    def __init__(self, registry):
        self.registry = registry

    def GetModelStatus(self, request, context):
        return _call(context, lambda: self._status(request))

    def _status(self, request):
        if not request.HasField("model_spec"):
            raise invalid_argument("Missing ModelSpec")
        states = self.registry.status(spec_from_proto(request.model_spec))
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in states:
            status = response.model_version_status.add()
            status.version = state.version
            status.state = get_model_status_pb2.ModelVersionStatus.State.Value(
                state.state
            )
            status.status.error_code = state.error_code.value
            status.status.error_message = state.error_message
        return response

    def HandleReloadConfigRequest(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "HandleReloadConfigRequest is not implemented by keras-mtl serve",
        )


_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


def make_grpc_server(
    predictor,
    address,
    max_threads=16,
    metrics=None,
    budget=None,
    max_tensor_bytes=None,
    credentials=None,
    health=None,
):
    """A started gRPC server for `predictor` on `address` ("host:port").

    `budget` (a `ByteBudget`) and `max_tensor_bytes` bound the memory that
    decoded inputs take: see `PredictionService`. `credentials`
    (`grpc.ssl_server_credentials`) serve TLS, None plaintext; `health` (a
    `ModelHealth`) adds `grpc.health.v1.Health`.

    Without batching it is grpcio's synchronous server with `max_threads`
    workers. With batching (`predictor.scheduler`) it is a `grpc.aio` server
    on an event loop thread (`AioServer`), whose `Predict` awaits its batch
    (`BatchingPredictionService`): on the synchronous server each waiting
    call held a thread, and with 16 clients of the adult model batching
    gained 1.24x over the unbatched server where the aio one gains
    1.46-1.59x over eight runs (`benchmarks/bench_serving.py`,
    docs/serving.md). Either has
    `stop(grace)`, returning an event set once stopped.
    """
    services = [
        (
            prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server,
            (BatchingPredictionService if predictor.scheduler else PredictionService)(
                predictor, metrics, budget, max_tensor_bytes
            ),
        ),
        (
            model_service_pb2_grpc.add_ModelServiceServicer_to_server,
            ModelService(predictor.registry),
        ),
    ]
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max_threads, thread_name_prefix="keras-mtl-grpc"
    )
    if predictor.scheduler is not None:
        return AioServer(pool, services, address, credentials, health)
    server = grpc.server(pool, options=_OPTIONS)
    _add(server, services, address, credentials, health)
    server.start()
    return server


def _add(server, services, address, credentials, health):
    for add, servicer in services:
        add(servicer, server)
    if health is not None:
        health.add_to_server(server)
    try:
        if credentials is not None:
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpc.aio raises where the synchronous server answers 0
        port = 0
    if port == 0:
        raise OSError(f"Could not bind the gRPC server to {address}")


class AioServer:
    """A started `grpc.aio` server on its own event loop thread.

    Coroutine handlers run on the loop; synchronous ones on `pool` (the aio
    server's migration pool). `stop(grace)` stops it as the synchronous
    server's `stop` does and returns a `threading.Event` set once stopped.
    """

    def __init__(self, pool, services, address, credentials=None, health=None):
        self._pool = pool
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._run_loop, name="keras-mtl-grpc-loop", daemon=True
        )
        self._thread.start()

        async def start():
            server = grpc.aio.server(migration_thread_pool=pool, options=_OPTIONS)
            _add(server, services, address, credentials, health)
            await server.start()
            return server

        try:
            self._server = asyncio.run_coroutine_threadsafe(
                start(), self._loop
            ).result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            pool.shutdown(wait=False)
            raise

    def _run_loop(self):
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def stop(self, grace=None):
        """Refuses new calls now, lets those in flight finish for up to
        `grace` seconds, then cancels them; returns an event set once done."""
        stopped = threading.Event()
        future = asyncio.run_coroutine_threadsafe(self._server.stop(grace), self._loop)

        def done(_):
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._pool.shutdown(wait=False)
            stopped.set()

        future.add_done_callback(done)
        return stopped
