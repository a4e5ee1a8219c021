"""The REST API over HTTP: TF Serving's URLs, JSON, errors and status codes."""

import base64
import gzip
import json
import logging
import socket
import time

import numpy as np
import pytest

from keras_mtl import saved_model
from keras_mtl.saved_model import LoadedModel
from keras_mtl.serving import Client, ModelServer, ServedModelConfig

import serving_helpers as helpers


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    return {
        "tabular": helpers.export_tabular(base),
        "image": helpers.export_image(base),
    }


@pytest.fixture(scope="module")
def server(models):
    configs = [
        ServedModelConfig(name, str(path.parent), version_labels={"stable": 1})
        for name, path in models.items()
    ]
    with ModelServer(
        configs,
        rest_api_port=helpers.free_port(),
        grpc_port=0,
        poll_wait_seconds=0,
        max_request_bytes=1 << 20,
    ) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    with Client(server.rest_url) as client:
        yield client


def whole_answer(server, data):
    """Sends raw HTTP `data` and returns the answer's body, read to its
    Content-Length; the status must be 200."""
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=30) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            assert chunk, received  # (the socket's timeout bounds each wait)
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, head
            rest += chunk
        return rest


def test_large_numeric_bodies_take_the_fast_path_and_answer_alike(
    client, server, models, monkeypatch
):
    """A body of at least `MIN_BODY_BYTES` whose arrays are long goes through
    the numeric fast path over HTTP (the REST front hands over a bytearray),
    and is answered byte for byte as without it."""
    from keras_mtl.serving import json_numeric, json_predict

    images = helpers.image_batch(48)
    answers, found = {}, []
    original = json_predict.parse_with_arrays
    for layout in ("instances", "inputs"):
        if layout == "instances":  # one array per image: each a long stretch
            monkeypatch.setattr(json_numeric, "MIN_ARRAY_BYTES", 1 << 10)
            body = {"instances": [{"image": x.tolist()} for x in images]}
        else:
            body = {"inputs": images.tolist()}
        body = json.dumps(body).encode()
        assert len(body) >= json_numeric.MIN_BODY_BYTES
        for fast in (True, False):
            monkeypatch.setattr(
                json_predict,
                "parse_with_arrays",
                (lambda raw: found.append(original(raw)) or found[-1])
                if fast
                else (lambda raw: None),
            )
            status, answer = client.request("POST", "/v1/models/image:predict", body)
            assert status == 200, answer[:300]
            answers[layout, fast] = answer
    assert len(found) == 2 and all(document is not None for document in found)
    assert answers["instances", True] == answers["instances", False]
    assert answers["inputs", True] == answers["inputs", False]
    # gzip-compressed, and sent in chunks: the body reaches the fast path
    # (as bytes, and as the reader's own buffer) and is answered alike
    monkeypatch.setattr(
        json_predict,
        "parse_with_arrays",
        lambda raw: found.append(original(raw)) or found[-1],
    )
    head = b"POST /v1/models/image:predict HTTP/1.1\r\nHost: x\r\n"
    packed = gzip.compress(body)
    for request in (
        head
        + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
        + packed,
        head
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(
            b"%x\r\n%s\r\n" % (len(piece), piece)
            for piece in (body[: len(body) // 3], body[len(body) // 3 :])
        )
        + b"0\r\n\r\n",
    ):
        assert whole_answer(server, request) == answers["inputs", True]
    assert len(found) == 4 and all(document is not None for document in found)
    expected = LoadedModel(models["image"]).predict({"image": images})
    for name, values in json.loads(answers["inputs", True])["outputs"].items():
        np.testing.assert_array_equal(np.array(values, np.float32), expected[name])


def test_model_status_as_tf_serving_prints_it(client):
    expected = {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert client.status("tabular") == expected
    assert client.status("tabular", version=1) == expected
    assert client.status("tabular", label="stable") == expected
    status, body = client.request("GET", "/V1/MODELS/tabular")  # (?i) as in TF
    assert status == 200 and json.loads(body) == expected


def test_metadata_keeps_signature_def_names_and_prints_shapes(client, models):
    metadata = client.metadata("tabular")
    assert metadata["model_spec"] == {
        "name": "tabular",
        "signature_name": "",
        "version": "1",
    }
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    serving = signatures["serving_default"]
    assert serving["method_name"] == "tensorflow/serving/predict"
    assert sorted(serving["inputs"]) == ["age", "hours-per-week", "workclass"]
    assert serving["inputs"]["hours-per-week"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
        "name": "serving_default_hours-per-week:0",
    }
    assert serving["inputs"]["workclass"]["dtype"] == "DT_STRING"
    assert serving["outputs"]["marital_status"]["tensor_shape"]["dim"][1] == {
        "size": "7",
        "name": "",
    }
    assert "__saved_model_init_op" in signatures  # as TF Serving lists it
    assert client.metadata("image", label="stable")["model_spec"]["version"] == "1"


def test_rows_and_columns_equal_the_saved_model_in_process(client, models):
    model = LoadedModel(models["tabular"])
    rows = helpers.tabular_rows(4)
    expected = model.predict(helpers.columns(rows, model.input_specs))
    predictions = client.predict("tabular", instances=rows)
    assert len(predictions) == 4 and set(predictions[0]) == {"income", "marital_status"}
    for name in expected:
        np.testing.assert_array_equal(
            np.array([p[name] for p in predictions], np.float32), expected[name]
        )
    outputs = client.predict(
        "tabular", inputs={name: [row[name] for row in rows] for name in rows[0]}
    )
    for name in expected:
        np.testing.assert_array_equal(
            np.array(outputs[name], np.float32), expected[name]
        )

    image_model = LoadedModel(models["image"])
    images = helpers.image_batch(3)
    expected = image_model.predict({"image": images})
    plain = client.predict("image", instances=images.tolist())  # one input: plain rows
    named = client.predict("image", instances=[{"image": x.tolist()} for x in images])
    columnar = client.predict("image", inputs=images.tolist(), version=1)
    assert plain == named
    for name in expected:
        np.testing.assert_array_equal(
            np.array([p[name] for p in plain], np.float32), expected[name]
        )
        np.testing.assert_array_equal(
            np.array(columnar[name], np.float32), expected[name]
        )


def test_raw_strings_missing_values_and_nan_tokens(client, models):
    rows = [
        {"age": float("nan"), "hours-per-week": 40, "workclass": " ?"},
        {"age": 39, "hours-per-week": 13, "workclass": "never-seen"},
    ]
    body = json.dumps({"instances": rows}).encode()
    assert b"NaN" in body
    status, answer = client.request("POST", "/v1/models/tabular:predict", body)
    assert status == 200, answer
    income = [row["income"][0] for row in json.loads(answer)["predictions"]]
    assert all(0.0 <= value <= 1.0 for value in income)
    b64 = {
        "age": 39.0,
        "hours-per-week": 13.0,
        "workclass": {"b64": base64.b64encode(b"State-gov").decode()},
    }
    plain = {"age": 39.0, "hours-per-week": 13.0, "workclass": "State-gov"}
    assert client.predict("tabular", instances=[b64]) == client.predict(
        "tabular", instances=[plain]
    )


GOOD_BODY = json.dumps({"instances": helpers.tabular_rows(1)})
DEEP = "[" * 3000 + "]" * 3000


@pytest.mark.parametrize(
    "method, path, body, status, fragment",
    [
        ("POST", "/v1/models/tabular:predict", "", 400, "The document is empty"),
        (
            "POST",
            "/v1/models/tabular:predict",
            "instances = [1, 2]",
            400,
            "Invalid value",
        ),
        (
            "POST",
            "/v1/models/tabular:predict",
            '{"instances": [], "inputs": {}}',
            400,
            "expecting only one of 'inputs' or 'instances'",
        ),
        (
            "POST",
            "/v1/models/image:predict",
            json.dumps({"instances": [[[[1.0] * 3] * 8] * 8, [[[1.0] * 3] * 8] * 7]}),
            400,
            "Expecting",
        ),
        (
            "POST",
            "/v1/models/image:predict",
            json.dumps({"instances": [[1.0, 2.0]]}),
            400,
            "expects shape [-1,8,8,3]",
        ),
        (
            "POST",
            "/v1/models/tabular:predict",
            json.dumps(
                {"instances": [{"age": "x", "hours-per-week": 1.0, "workclass": "a"}]}
            ),
            400,
            "is not of expected type: float",
        ),
        (
            "POST",
            "/v1/models/tabular:predict",
            json.dumps(
                {"instances": [{"age": 1.0, "hours-per-week": 1.0, "workclass": 7}]}
            ),
            400,
            "is not of expected type: string",
        ),
        (
            "POST",
            "/v1/models/tabular:predict",
            '{"signature_name": 100}',
            400,
            "'signature_name' key must be a string value.",
        ),
        ("POST", "/v1/models/image:predict", DEEP, 400, "JSON Parse error"),
        (
            "POST",
            "/v1/models/image:predict",
            '{"instances": ' + "[" * 60 + "1" + "]" * 60 + "}",
            400,
            "nested too deeply",
        ),
        (
            "POST",
            "/v1/models/nope:predict",
            GOOD_BODY,
            404,
            "Servable not found for request: Latest(nope)",
        ),
        (
            "POST",
            "/v1/models/tabular/versions/99:predict",
            GOOD_BODY,
            404,
            "Servable not found for request: Specific(tabular, 99)",
        ),
        (
            "POST",
            "/v1/models/tabular/versions/HELLO:predict",
            GOOD_BODY,
            400,
            "Malformed request: POST /v1/models/tabular/versions/HELLO:predict",
        ),
        (
            "POST",
            "/v1/models/tabular/versions/18446744073709551615:predict",
            GOOD_BODY,
            400,
            "Failed to convert version",
        ),
        ("POST", "/v1/models/tabular/version/1:predict", GOOD_BODY, 400, "Malformed"),
        ("GET", "/v1/models/tabular/version/1", "", 400, "Malformed"),
        (
            "POST",
            "/v1/models/tabular/versions/1/labels/stable:predict",
            GOOD_BODY,
            400,
            "Malformed",
        ),
        (
            "POST",
            "/v1/models/tabular/label/stable:predict",
            GOOD_BODY,
            400,
            "Malformed",
        ),
        (
            "POST",
            "/v1/models/tabular/labels/nope:predict",
            GOOD_BODY,
            400,
            "Unrecognized servable version label: nope",
        ),
        ("POST", "/v1/models/tabular/metadata", "", 400, "Malformed request"),
        ("GET", "/v1/models/tabular:predict", "", 400, "Malformed request"),
        ("PUT", "/v1/models/tabular:predict", GOOD_BODY, 400, "Malformed request"),
        ("GET", "/v1/models", "", 400, "Missing model name"),
        ("GET", "/v1/foo", "", 400, "Malformed request"),
        (
            "GET",
            "/v1/models/nope",
            "",
            404,
            "Could not find any versions of model nope",
        ),
        (
            "GET",
            "/v1/models/tabular/versions/7",
            "",
            404,
            "Could not find version 7 of model tabular",
        ),
        ("GET", "/v1/models/nope/metadata", "", 404, "Servable not found"),
        ("GET", "/index.html", "", 404, "Not found"),
        (
            "POST",
            "/v1/models/tabular:predict",
            '{"signature_name": "nope", "instances": [1]}',
            400,
            'Serving signature name: "nope" not found in signature def',
        ),
        (
            "POST",
            "/v1/models/tabular:predict",
            '{"signature_name": "__saved_model_init_op", "instances": [1]}',
            400,
            "Failed to get input map for signature: __saved_model_init_op",
        ),
        (
            "POST",
            "/v1/models/tabular:classify",
            '{"examples": [{"age": 39.0}]}',
            400,
            "Expected one input Tensor.",
        ),
        (
            "POST",
            "/v1/models/tabular:regress",
            '{"examples": [{"age": 39.0}]}',
            400,
            "Expected one input Tensor.",
        ),
        ("POST", "/v1/models/tabular:regress", '{"examples": []}', 400, "empty array"),
        (
            "POST",
            "/v1/models/nope:classify",
            '{"examples": [{"a": 1}]}',
            404,
            "Servable not found",
        ),
        (
            "POST",
            "/v1/models/tabular:predict",
            json.dumps({"instances": [{"age": 1.0, "hours-per-week": 1.0}]}),
            400,
            "must only have keys: age,hours-per-week,workclass",
        ),
        (
            "POST",
            "/v1/models/tabular:predict",
            json.dumps({"inputs": {"age": [1.0], "hours-per-week": [1.0]}}),
            400,
            "Missing named input: workclass in 'inputs' object.",
        ),
        (
            "POST",
            "/v1/models/tabular:predict",
            json.dumps(
                {
                    "inputs": {
                        "age": [1.0, 2.0],
                        "hours-per-week": [1.0],
                        "workclass": ["a"],
                    }
                }
            ),
            400,
            "Dimension 0 in both shapes must be equal",  # the model's own error
        ),
    ],
)
def test_bad_requests_get_tf_serving_status_and_the_next_one_succeeds(
    client, method, path, body, status, fragment
):
    answer_status, answer = client.request(method, path, body.encode() or None)
    assert answer_status == status, answer
    error = json.loads(answer)["error"]
    assert fragment in error
    good = client.predict("tabular", instances=helpers.tabular_rows(1))
    assert 0.0 <= good[0]["income"][0] <= 1.0


def test_a_body_over_the_limit_gets_413_and_the_server_goes_on(client, server):
    status, answer = client.request(
        "POST",
        "/v1/models/image:predict",
        b'{"instances": [' + b"1," * (1 << 20) + b"1]}",
    )
    assert status == 413
    assert "exceeds the limit of 1048576 bytes" in json.loads(answer)["error"]
    assert client.status("image")["model_version_status"][0]["state"] == "AVAILABLE"


def raw_exchange(server, data, read_until=b"}"):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while read_until not in received.rpartition(b"\r\n\r\n")[2]:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_http_details_chunked_expect_continue_and_bad_request_lines(server):
    body = GOOD_BODY.encode()
    chunked = (
        b"POST /v1/models/tabular:predict HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        + b"%x\r\n" % 10
        + body[:10]
        + b"\r\n"
        + b"%x\r\n" % (len(body) - 10)
        + body[10:]
        + b"\r\n0\r\n\r\n"
    )
    assert raw_exchange(server, chunked).startswith(b"HTTP/1.1 200 OK")
    expect = (
        b"POST /v1/models/tabular:predict HTTP/1.1\r\nHost: x\r\nExpect: 100-continue"
        b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    answer = raw_exchange(server, expect)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert raw_exchange(server, b"NONSENSE\r\n\r\n").startswith(
        b"HTTP/1.1 400 Bad Request"
    )
    legacy = raw_exchange(server, b"GET /v1/models/image HTTP/1.0\r\n\r\n")
    assert legacy.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in legacy


def test_keep_alive_answers_fast_without_nagle_delay(client):
    body = GOOD_BODY.encode()
    client.request("POST", "/v1/models/tabular:predict", body)
    connection = client._connection()
    times = []
    for _ in range(30):
        start = time.perf_counter()
        status, _ = client.request("POST", "/v1/models/tabular:predict", body)
        times.append(time.perf_counter() - start)
        assert status == 200
    assert client._connection() is connection  # one kept-alive connection
    # Nagle's algorithm with delayed ACKs costs ~40 ms a request.
    assert sorted(times)[len(times) // 2] < 0.02, times


def test_a_client_that_hangs_up_mid_body_does_not_wedge_the_server(server, client):
    with socket.create_connection(("127.0.0.1", server.rest_port)) as sock:
        sock.sendall(
            b"POST /v1/models/tabular:predict HTTP/1.1\r\nContent-Length: 1000\r\n\r\n"
            b'{"instances": '
        )
    assert client.status("tabular")["model_version_status"][0]["version"] == "1"


def test_the_adult_model_takes_raw_csv_rows(adult_csv, tmp_path):
    """Rows of the real UCI Adult file as they are written, `?` and spaces kept."""
    import csv
    import itertools

    import keras_mtl

    config = keras_mtl.load_config(
        "adult",
        [
            f"data.path={adult_csv}",
            "data.max_examples=2000",
            "model.width=8",
            "model.depth=1",
            "model.head_units=8",
        ],
    )
    datasets = keras_mtl.load_datasets(config)
    model = keras_mtl.build_model(config, datasets.features)
    path = keras_mtl.export_saved_model(model, tmp_path, "adult")
    loaded = LoadedModel(path)
    with open(adult_csv, newline="") as file:
        reader = csv.reader(file)
        header = [name.strip() for name in next(reader)]
        raw = [
            dict(zip(header, row, strict=True)) for row in itertools.islice(reader, 300)
        ]
    rows = [r for r in raw if "?" in r["workclass"]][:2] + raw[:3]
    assert rows[0]["workclass"] == " ?"
    instances = [
        {
            name: float(row[name]) if spec.dtype.is_floating else row[name]
            for name, spec in loaded.input_specs.items()
        }
        for row in rows
    ]
    assert "hours-per-week" in instances[0] and "relationship" not in instances[0]
    expected = loaded.predict(helpers.columns(instances, loaded.input_specs))
    with ModelServer(
        [ServedModelConfig("adult", str(path.parent))],
        rest_api_port=helpers.free_port(),
        grpc_port=0,
        poll_wait_seconds=0,
    ) as server:
        predictions = Client(server.rest_url).predict("adult", instances=instances)
    for name in ("marital_status", "income"):
        np.testing.assert_array_equal(
            np.array([p[name] for p in predictions], np.float32), expected[name]
        )
    assert len(predictions[0]["marital_status"]) == 7


def test_connections_are_bounded_and_idle_ones_time_out():
    import threading

    from keras_mtl.serving.http_server import HttpServer

    active, peak, lock = [0], [0], threading.Lock()

    def app(method, target, body):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return 200, b"{}", "application/json"

    server = HttpServer(("127.0.0.1", 0), app, num_threads=3, idle_timeout=0.5)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        time.sleep(0.1)
        start = time.perf_counter()
        with Client(f"127.0.0.1:{port}") as client:
            assert client.request("GET", "/x")[0] == 200  # idle ones hold no worker
        assert time.perf_counter() - start < 0.3
        for sock in idle:  # and they idle out
            sock.settimeout(5)
            assert sock.recv(1) == b""
            sock.close()
        statuses = []
        clients = [
            threading.Thread(
                target=lambda: statuses.extend(
                    Client(f"127.0.0.1:{port}").request("GET", "/x")[0]
                    for _ in range(3)
                )
            )
            for _ in range(8)
        ]
        for each in clients:
            each.start()
        for each in clients:
            each.join(timeout=30)
        assert statuses == [200] * 24 and peak[0] <= 3
    finally:
        server.shutdown()
        server.server_close()


def test_run_calls_the_signature_directly_and_equals_predict(
    models, monkeypatch, caplog
):
    model = LoadedModel(models["tabular"])
    arrays = helpers.columns(helpers.tabular_rows(5), model.input_specs)
    expected = model.predict(arrays)
    with caplog.at_level(logging.INFO, logger="keras_mtl.serving"):
        first = model.run(arrays)  # the public call, which then checks the direct one
    assert model.executor == {"serving_default": "single-threaded"}
    assert (
        "signature 'serving_default' runs as one op on TensorFlow's "
        "single-threaded executor" in caplog.text
    )
    second = model.run(arrays)  # the direct call
    # Inputs swapped by name: the direct call must feed by name, not by position.
    swapped = {
        **arrays,
        "age": arrays["hours-per-week"],
        "hours-per-week": arrays["age"],
    }
    swapped_expected = model.predict(swapped)
    swapped_outputs = model.run(swapped)
    for name in expected:
        np.testing.assert_allclose(first[name], expected[name], rtol=1e-6)
        np.testing.assert_allclose(second[name], expected[name], rtol=1e-6)
        np.testing.assert_allclose(
            swapped_outputs[name], swapped_expected[name], rtol=1e-6
        )
    assert not np.allclose(swapped_expected["income"], expected["income"])

    real = saved_model._direct_call

    def executor_with(direct_call):
        """The executor `run` keeps when the direct call is `direct_call`;
        the answers stay the public call's whichever it is."""
        monkeypatch.setattr(saved_model, "_direct_call", direct_call)
        fallback = LoadedModel(models["tabular"])
        for _ in range(2):
            outputs = fallback.run(arrays)
            np.testing.assert_allclose(outputs["income"], expected["income"], rtol=1e-6)
        return fallback.executor

    # An executor that cannot run the graph: the default one is kept.
    def no_single_thread(function, executor_type=""):
        if executor_type == saved_model.SINGLE_THREADED_EXECUTOR:
            raise RuntimeError("Single-threaded executor does not support ...")
        return real(function, executor_type)

    assert executor_with(no_single_thread) == {"serving_default": "default"}

    # A direct call that answers differently is not kept either.
    def wrong(function, executor_type=""):
        call = real(function, executor_type)
        return lambda tensors: {k: v * 2.0 for k, v in call(tensors).items()}

    assert executor_with(wrong) == {"serving_default": "public"}

    # Where TensorFlow's private API is gone, run keeps the public call.
    def gone(function, executor_type=""):
        raise AttributeError("_inference_function")

    assert executor_with(gone) == {"serving_default": "public"}
