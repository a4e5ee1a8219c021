"""`Content-Encoding: gzip` request bodies on the REST front."""

import gzip
import hashlib
import http.client
import json
import threading
import tracemalloc

import pytest

from keras_mtl.serving.byte_budget import ByteBudget
from keras_mtl.serving.http_encoding import decoded_body
from keras_mtl.serving.http_request import HttpError, Request
from keras_mtl.serving.http_server import HttpServer


def digest_app(method, target, body):
    answer = {"size": len(body), "sha1": hashlib.sha1(body).hexdigest()}
    return 200, json.dumps(answer).encode(), "application/json"


@pytest.fixture
def server():
    budget = ByteBudget(8 << 20)
    server = HttpServer(
        ("127.0.0.1", 0),
        digest_app,
        num_threads=2,
        max_body_bytes=1 << 20,
        budget=budget,
    )
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield server
    server.shutdown()
    server.server_close()


def post(server, body, encoding="gzip"):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], 10)
    try:
        headers = {"Content-Encoding": encoding} if encoding else {}
        connection.request("POST", "/v1/models/m:predict", body, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_gzip_body_reaches_the_app_decompressed(server):
    body = json.dumps({"instances": [[float(i)] * 8 for i in range(500)]}).encode()
    status, answer = post(server, gzip.compress(body))
    assert status == 200
    assert answer == {"size": len(body), "sha1": hashlib.sha1(body).hexdigest()}
    two_members = gzip.compress(body[:100]) + gzip.compress(body[100:])
    assert post(server, two_members)[1]["size"] == len(body)
    assert post(server, body, encoding="identity")[1]["size"] == len(body)
    assert server.budget.in_flight == 0


def test_a_gzip_bomb_is_refused_with_413_without_inflating_it(server):
    bomb = gzip.compress(bytes(64 << 20), 9)  # 64 MiB of zeros in ~64 KiB
    assert len(bomb) < 1 << 20  # under the limit as sent
    status, answer = post(server, bomb)
    assert status == 413
    assert "Decompressed request body exceeds the limit of 1048576" in answer["error"]
    assert server.budget.in_flight == 0
    tracemalloc.start()
    with pytest.raises(HttpError) as caught:
        decoded_body(
            Request("POST", "/", True, bytearray(bomb), 0, b"", "gzip"), 1 << 20
        )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert caught.value.status == 413
    assert peak < 8 << 20  # a few MiB, never the 64 MiB


def test_broken_or_unknown_encodings_are_refused(server):
    body = gzip.compress(b'{"instances": [1, 2, 3]}')
    status, answer = post(server, body[:-12])
    assert status == 400 and "gzip" in answer["error"]
    status, answer = post(server, b"not gzip at all")
    assert status == 400 and "Malformed gzip" in answer["error"]
    status, answer = post(server, body, encoding="br")
    assert status == 415 and "Unsupported Content-Encoding: br" in answer["error"]
    assert server.budget.in_flight == 0
