"""TF Serving's REST API as a function: (method, path, body) -> (status, body).

The routes, their regular expressions, the order of the checks and the error
bodies are those of `model_servers/http_rest_api_handler.cc` and
`http_rest_api_util.cc`:

    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/metadata   signatures
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:predict    (and
         :classify, :regress)

Errors answer `{"error": "..."}` with the HTTP status of their code. No web
framework is involved, so the handler is tested without sockets and any HTTP
front can call it.
"""

import json
import re
import time
import urllib.parse

from google.protobuf import json_format

from keras_mtl.serving import inference, json_predict, json_response
from keras_mtl.serving.gc_pause import paused_gc
from keras_mtl.serving.registry import ModelSpec
from keras_mtl.serving.status import Code, ServingError, invalid_argument

JSON = "application/json"
_PREDICT = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r":(classify|regress|predict)",
    re.IGNORECASE,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/([0-9]+))|(?:/labels/([^/:]+)))?"
    r"(?:/(metadata))?",
    re.IGNORECASE,
)
_API = re.compile(r"/v1/.*", re.IGNORECASE)
_INT64_MAX = 2**63 - 1
_COUNTED = ("predict", "classify", "regress")  # as TF Serving's request_count


def error_body(message):
    return json.dumps({"error": message}).encode()


def status_json(states):
    """GetModelStatusResponse as TF Serving prints it."""
    return {
        "model_version_status": [
            {
                "version": str(state.version),
                "state": state.state,
                "status": {
                    "error_code": state.error_code.name,
                    "error_message": state.error_message,
                },
            }
            for state in states
        ]
    }


def metadata_json(servable):
    """GetModelMetadataResponse (signature_def) as TF Serving prints it."""
    signature_defs = {
        key: json_format.MessageToDict(
            signature_def,
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        for key, signature_def in servable.model.signature_defs.items()
    }
    return {
        "model_spec": {
            "name": servable.name,
            "signature_name": "",
            "version": str(servable.version),
        },
        "metadata": {"signature_def": {"signature_def": signature_defs}},
    }


def _version(text):
    if not text:
        return None
    version = int(text)
    if version > _INT64_MAX:
        raise invalid_argument(f"Failed to convert version: {text} to numeric.")
    return version


class RestApi:
    """Answers TF Serving REST requests with a `Predictor`.

    Args:
        predictor: The `Predictor` of the server.
        metrics: A `Metrics`, or None.
        timeout_seconds: How long a request may wait for a batch, or None.

    Example:

    ```python
    api = RestApi(predictor)
    status, body = api.handle("POST", "/v1/models/shapes:predict", request_body)
    ```
    """

    def __init__(self, predictor, metrics=None, timeout_seconds=None):
        self.predictor = predictor
        self.metrics = metrics
        self.timeout_seconds = timeout_seconds

    def handle(self, method, path, body=b""):
        """Returns (HTTP status, JSON body bytes); never raises for bad input."""
        start = time.perf_counter()
        path = urllib.parse.urlsplit(path).path
        route = None
        try:
            route = self._route(method, path)
            payload = route[2](body)
            status, code = 200, Code.OK.name
        except ServingError as error:
            status, payload = error.http_status, error_body(error.message)
            code = error.code.name
        except Exception as error:  # a fault of ours, not of the request
            status = 500
            payload = error_body(f"Internal error: {type(error).__name__}: {error}")
            code = Code.INTERNAL.name
        if self.metrics and route and route[1] in _COUNTED:
            self.metrics.count_request(route[0], code)
            self.metrics.observe_request(
                route[0], route[1], "REST", (time.perf_counter() - start) * 1e6
            )
        return status, payload

    def _route(self, method, path):
        """(model name, API name, body -> answer) for a request line."""
        if not _API.fullmatch(path):
            raise ServingError(Code.NOT_FOUND, f"Not found: {method} {path}")
        match = None
        if method == "POST":
            match = _PREDICT.fullmatch(path)
        elif method == "GET":
            match = _STATUS.fullmatch(path)
        if match is None:
            raise invalid_argument(f"Malformed request: {method} {path}")
        name = urllib.parse.unquote(match.group(1) or "")
        version = _version(match.group(2))
        label = match.group(3)
        spec = ModelSpec(name, version, urllib.parse.unquote(label) if label else None)
        action = (match.group(4) or "").lower()
        if method == "GET":
            if not name:
                raise invalid_argument("Missing model name in request.")
            if action:
                return name, "GetModelMetadata", lambda body: self._metadata(spec)
            return name, "GetModelStatus", lambda body: self._status(spec)
        if action == "predict":
            return name, "predict", lambda body: self._predict(spec, body)
        return name, action, lambda body: self._classify_regress(spec, body, action)

    def _status(self, spec):
        states = self.predictor.registry.status(spec)
        return json.dumps(status_json(states), indent=1).encode()

    def _metadata(self, spec):
        servable = self.predictor.servable(spec)
        return json.dumps(metadata_json(servable), indent=1).encode()

    def _deadline(self):
        """When a batched call stops waiting (`time.monotonic()`), or None."""
        if self.timeout_seconds:
            return time.monotonic() + self.timeout_seconds
        return None

    def _predict(self, spec, body):
        resolved = []

        def input_infos(signature_name):
            resolved.append(self.predictor.servable(spec))
            return self.predictor.input_infos(resolved[0], signature_name)

        with paused_gc(len(body)):
            request = json_predict.predict_request_from_json(body, input_infos)
        outputs = self.predictor.predict(
            resolved[0],
            request.signature_name,
            request.inputs,
            deadline=self._deadline(),
        )
        return json_predict.tensors_to_json(outputs, request.format)

    def _classify_regress(self, spec, body, method):
        signature_name, examples, context = (
            json_predict.classify_regress_request_from_json(body, method)
        )
        servable = self.predictor.servable(spec)
        _, answer = inference.classify_regress(
            self.predictor,
            servable,
            signature_name,
            method,
            inference.serialize_examples(examples, context),
            self._deadline(),
        )
        if method == "classify":
            return json_response.classification_to_json(answer)
        return json_response.regression_to_json(answer)
