"""`Client`: a small client for TF Serving's REST and gRPC APIs.

It talks to `keras-mtl serve` and to `tensorflow_model_server` alike. REST
needs only the standard library: one kept-alive HTTP/1.1 connection per
thread, with TCP_NODELAY, and a lean reader of the answer (`http.client`
parses headers with the email package, ~60 us a call). gRPC needs the
`serving` extra. Errors raise
`ServingError` with the server's status code and message.

Example:

```python
client = keras_mtl.serving.Client("127.0.0.1:8501", grpc="127.0.0.1:8500")
client.predict("adult", instances=[{"age": 39.0, "workclass": "State-gov", ...}])
client.grpc_predict("shapes", {"image": images})  # {"coarse": array, "fine": array}
```
"""

import json
import socket
import threading
import urllib.parse

import numpy as np

from keras_mtl.serving.status import HTTP_STATUS, Code, ServingError

_CODE_OF_HTTP = {}
for _code, _status in HTTP_STATUS.items():
    _CODE_OF_HTTP.setdefault(_status, _code)


def _address(target):
    if "://" not in target:
        target = "http://" + target
    parts = urllib.parse.urlsplit(target)
    return parts.hostname, parts.port or 80


def _model_path(model, version=None, label=None):
    if version is not None and label is not None:
        raise ValueError(
            f"Pass a version or a label, not both. Received: version={version}, "
            f"label={label!r}"
        )
    path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{urllib.parse.quote(label, safe='')}"
    return path


class Client:
    """REST (and gRPC) calls to a TF Serving compatible server.

    Args:
        rest: "host:port" (or a URL) of the REST API, or None.
        grpc: "host:port" of the gRPC API, or None.
        timeout: Seconds to wait for an answer.
    """

    def __init__(self, rest="127.0.0.1:8501", grpc=None, timeout=30.0):
        self.rest = _address(rest) if rest else None
        self.grpc_target = grpc
        self.timeout = timeout
        self._local = threading.local()
        self._channel = self._prediction = self._model_service = None

    # REST

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self.rest is None:
                raise ValueError("This client has no REST address; pass rest=...")
            connection = _Connection(self.rest, self.timeout)
            self._local.connection = connection
        return connection

    def request(self, method, path, body=None):
        """One REST call; returns (HTTP status, body bytes). Reconnects once."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        for attempt in (0, 1):
            connection = self._connection()
            try:
                status, payload, keep_alive = connection.exchange(method, path, body)
            except (ConnectionError, OSError, ValueError):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
                continue
            if not keep_alive:
                connection.close()
                self._local.connection = None
            return status, payload
        raise AssertionError("unreachable")

    def _json(self, method, path, body=None):
        status, payload = self.request(method, path, body)
        document = json.loads(payload) if payload else {}
        if status != 200:
            message = document.get("error", payload.decode("utf-8", "replace"))
            raise ServingError(_CODE_OF_HTTP.get(status, Code.UNKNOWN), message)
        return document

    def status(self, model, version=None, label=None):
        """GET /v1/models/{model}: `{"model_version_status": [...]}`."""
        return self._json("GET", _model_path(model, version, label))

    def metadata(self, model, version=None, label=None):
        """GET .../metadata: `{"model_spec": ..., "metadata": {"signature_def": ...}}`."""
        return self._json("GET", _model_path(model, version, label) + "/metadata")

    def predict(
        self,
        model,
        instances=None,
        inputs=None,
        version=None,
        label=None,
        signature_name=None,
    ):
        """POST ...:predict. Row `instances` answer a list (the predictions),
        columnar `inputs` a dict (the outputs)."""
        if (instances is None) == (inputs is None):
            raise ValueError("Pass exactly one of `instances` (rows) or `inputs`.")
        body = {"instances": instances} if instances is not None else {"inputs": inputs}
        if signature_name is not None:
            body["signature_name"] = signature_name
        body = json.dumps(body, default=_jsonable).encode()
        answer = self._json(
            "POST", _model_path(model, version, label) + ":predict", body
        )
        return answer["predictions"] if instances is not None else answer["outputs"]

    def classify(
        self, model, examples, signature_name, context=None, version=None, label=None
    ):
        """POST ...:classify: `examples` (one dict of feature -> value or list
        of values per Example; TF Serving's typing: a float feature's values
        are written with a decimal point) and an optional `context` shared by
        all; answers `[[label, score], ...]` per Example."""
        return self._inference(
            "classify", model, examples, signature_name, context, version, label
        )

    def regress(
        self, model, examples, signature_name, context=None, version=None, label=None
    ):
        """POST ...:regress: as `classify`; answers one value per Example."""
        return self._inference(
            "regress", model, examples, signature_name, context, version, label
        )

    def _inference(
        self, method, model, examples, signature_name, context, version, label
    ):
        body = {"signature_name": signature_name, "examples": examples}
        if context is not None:
            body["context"] = context
        body = json.dumps(body, default=_jsonable).encode()
        path = _model_path(model, version, label) + f":{method}"
        return self._json("POST", path, body)["result"]

    # gRPC

    def _stubs(self):
        if self._prediction is None:
            if not self.grpc_target:
                raise ValueError("This client has no gRPC address; pass grpc=...")
            try:
                import grpc
                from tensorflow_serving.apis import (
                    model_service_pb2_grpc,
                    prediction_service_pb2_grpc,
                )
            except ImportError:
                raise ImportError(
                    "gRPC needs the tensorflow-serving-api protos: pip install "
                    '"keras-mtl[serving]"'
                ) from None
            self._channel = grpc.insecure_channel(
                self.grpc_target,
                options=[("grpc.max_receive_message_length", 2**31 - 1)],
            )
            self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(
                self._channel
            )
            self._model_service = model_service_pb2_grpc.ModelServiceStub(self._channel)
        return self._prediction, self._model_service

    @staticmethod
    def _model_spec(spec, model, version, label, signature_name=None):
        spec.name = model
        if version is not None:
            spec.version.value = int(version)
        if label is not None:
            spec.version_label = label
        if signature_name:
            spec.signature_name = signature_name

    def _grpc_call(self, method, request):
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingError(Code[error.code().name], error.details()) from None

    def grpc_predict(
        self,
        model,
        inputs,
        version=None,
        label=None,
        signature_name=None,
        output_filter=(),
    ):
        """PredictionService.Predict: input name -> array in, output name ->
        numpy array out."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        prediction, _ = self._stubs()
        request = predict_pb2.PredictRequest()
        self._model_spec(request.model_spec, model, version, label, signature_name)
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        request.output_filter.extend(output_filter)
        response = self._grpc_call(prediction.Predict, request)
        return {name: tf.make_ndarray(t) for name, t in response.outputs.items()}

    def grpc_classify(
        self, model, examples, signature_name, context=None, version=None, label=None
    ):
        """PredictionService.Classify: `examples` and `context` as in
        `classify` (or `tf.train.Example` protos); answers `[[label, score],
        ...]` per Example, as `classify` does."""
        from tensorflow_serving.apis import classification_pb2

        prediction, _ = self._stubs()
        request = classification_pb2.ClassificationRequest()
        self._fill_inference(
            request, model, examples, signature_name, context, version, label
        )
        response = self._grpc_call(prediction.Classify, request)
        return [
            [[item.label, item.score] for item in row.classes]
            for row in response.result.classifications
        ]

    def grpc_regress(
        self, model, examples, signature_name, context=None, version=None, label=None
    ):
        """PredictionService.Regress: as `grpc_classify`; answers one value
        per Example."""
        from tensorflow_serving.apis import regression_pb2

        prediction, _ = self._stubs()
        request = regression_pb2.RegressionRequest()
        self._fill_inference(
            request, model, examples, signature_name, context, version, label
        )
        response = self._grpc_call(prediction.Regress, request)
        return [item.value for item in response.result.regressions]

    def _fill_inference(
        self, request, model, examples, signature_name, context, version, label
    ):
        self._model_spec(request.model_spec, model, version, label, signature_name)
        if context is not None:
            target = request.input.example_list_with_context
            target.context.CopyFrom(_as_example(context))
        else:
            target = request.input.example_list
        target.examples.extend(_as_example(example) for example in examples)

    def grpc_metadata(self, model, version=None, label=None):
        """PredictionService.GetModelMetadata: the GetModelMetadataResponse."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        prediction, _ = self._stubs()
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._model_spec(request.model_spec, model, version, label)
        request.metadata_field.append("signature_def")
        return self._grpc_call(prediction.GetModelMetadata, request)

    def grpc_status(self, model, version=None, label=None):
        """ModelService.GetModelStatus: the GetModelStatusResponse."""
        from tensorflow_serving.apis import get_model_status_pb2

        _, model_service = self._stubs()
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request.model_spec, model, version, label)
        return self._grpc_call(model_service.GetModelStatus, request)

    def close(self):
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
        if self._channel is not None:
            self._channel.close()
            self._channel = self._prediction = self._model_service = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _as_example(value):
    """A `tf.train.Example` from one, or from a dict of feature -> value(s)
    typed as TF Serving types a REST `:classify` body's."""
    import tensorflow as tf

    if isinstance(value, tf.train.Example):
        return value
    from keras_mtl.serving.json_predict import example_from_json

    return example_from_json(json.loads(json.dumps(value, default=_jsonable)))


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class _Connection:
    """A kept-alive HTTP/1.1 connection: one request, one answer at a time."""

    def __init__(self, address, timeout):
        self.host = f"{address[0]}:{address[1]}"
        self.socket = socket.create_connection(address, timeout=timeout)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.socket.makefile("rb")

    def exchange(self, method, path, body):
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.socket.sendall(head.encode("latin-1") + b"\r\n" + (body or b""))
        status_line = self.reader.readline(65537)
        if not status_line:
            raise ConnectionError("the server closed the connection")
        version, status = status_line.split(None, 2)[:2]
        headers = {}
        while True:
            line = self.reader.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            payload = self._read_chunked()
        elif b"content-length" in headers:
            payload = self.reader.read(int(headers[b"content-length"]))
        else:
            payload = self.reader.read()
            headers[b"connection"] = b"close"
        connection = headers.get(b"connection", b"").lower()
        keep_alive = connection != b"close" and version == b"HTTP/1.1"
        return int(status), payload, keep_alive

    def _read_chunked(self):
        chunks = []
        while True:
            size = int(self.reader.readline(65537).split(b";")[0], 16)
            if size == 0:
                while self.reader.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.reader.read(size))
            self.reader.readline(65537)

    def close(self):
        try:
            self.reader.close()
            self.socket.close()
        except OSError:
            pass
