"""TF Serving's gRPC services: `PredictionService` and `ModelService`.

Built on the `tensorflow-serving-api` protos and stubs (the `serving` extra),
so the stock `prediction_service_pb2_grpc.PredictionServiceStub` works
against it. Predict, GetModelMetadata and GetModelStatus share the
`Predictor` with the REST API and give the same answers and the same errors
(as gRPC status codes). Classify and Regress answer TF Serving's error for a
model without such signatures; MultiInference and HandleReloadConfigRequest
answer UNIMPLEMENTED.
"""

import concurrent.futures
import time

import grpc
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_mtl.serving.registry import ModelSpec
from keras_mtl.serving.status import Code, ServingError, invalid_argument
from keras_mtl.serving.tensor_proto import fill_tensor_proto, to_ndarray
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
    except ServingError as raised:
        error = raised
    except Exception as raised:  # a fault of ours, reported as INTERNAL
        error = ServingError(Code.INTERNAL, f"{type(raised).__name__}: {raised}")
    finally:
        if metrics and model_name:
            metrics.count_request(model_name, error.code.name if error else "OK")
            metrics.observe_request(
                model_name, api, "GRPC", (time.perf_counter() - start) * 1e6
            )
    context.abort(grpc.StatusCode[error.code.name], error.message)


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
        spec = spec_from_proto(request.model_spec)
        servable = self.predictor.servable(spec)
        size = check_decoded_size(request.inputs, self.max_tensor_bytes)
        if self.budget is None:
            return self._run_predict(request, context, spec, servable)
        self.budget.reserve_or_raise(size)
        try:
            return self._run_predict(request, context, spec, servable)
        finally:
            self.budget.release(size)

    def _run_predict(self, request, context, spec, servable):
        inputs = {}
        for alias, tensor in request.inputs.items():
            try:
                inputs[alias] = to_ndarray(tensor)
            except Exception:  # a TensorProto that does not parse
                raise invalid_argument(f"tensor parsing error: {alias}") from None
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        outputs = self.predictor.predict(
            servable,
            spec.signature_name,
            inputs,
            list(request.output_filter),
            deadline,
        )
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = spec.signature_name or "serving_default"
        for name, value in outputs.items():
            fill_tensor_proto(response.outputs[name], value)
        return response

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

    def _classify_regress(self, request, method):
        spec = spec_from_proto(request.model_spec)
        servable = self.predictor.servable(spec)
        self.predictor.check_classify_regress(servable, spec.signature_name, method)

    def Classify(self, request, context):
        return _call(context, lambda: self._classify_regress(request, "classify"))

    def Regress(self, request, context):
        return _call(context, lambda: self._classify_regress(request, "regress"))

    def MultiInference(self, request, context):
        context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            "MultiInference is not implemented by keras-mtl serve",
        )


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
    """
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(
            max_workers=max_threads, thread_name_prefix="keras-mtl-grpc"
        ),
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(predictor, metrics, budget, max_tensor_bytes), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(predictor.registry), server
    )
    if health is not None:
        health.add_to_server(server)
    if credentials is not None:
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"Could not bind the gRPC server to {address}")
    server.start()
    return server
