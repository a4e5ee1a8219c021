"""The REST front under hostile clients: idle sockets, too many connections,
bodies that would fill memory, and a shutdown with requests in flight."""

import json
import socket
import threading
import time

import pytest

from keras_mtl.serving import Client
from keras_mtl.serving.byte_budget import ByteBudget
from keras_mtl.serving.http_server import HttpServer


def slow_app(seconds=0.0, seen=None):
    def app(method, target, body):
        if seen is not None:
            seen.append(len(body))
        time.sleep(seconds)
        return 200, b'{"ok": true}', "application/json"

    return app


@pytest.fixture
def serve():
    """Starts HttpServers on loopback; shuts them down after the test."""
    servers = []

    def start(app, **options):
        server = HttpServer(("127.0.0.1", 0), app, **options)
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def connect(server, timeout=5.0):
    return socket.create_connection(("127.0.0.1", server.server_address[1]), timeout)


def read_response(sock):
    received = b""
    while b"\r\n\r\n" not in received or not received.endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def test_idle_and_slow_connections_do_not_starve_other_clients(serve):
    server = serve(slow_app(), num_threads=4, idle_timeout=5.0)
    idle = [connect(server) for _ in range(64)]
    slow = [connect(server) for _ in range(8)]
    for sock in slow:  # a request head sent a few bytes at a time, never finished
        sock.sendall(b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Le")
    try:
        start = time.perf_counter()
        with Client(f"127.0.0.1:{server.server_address[1]}", timeout=2) as client:
            for _ in range(20):
                assert client.request("GET", "/v1/models/m")[0] == 200
        assert time.perf_counter() - start < 1.5
    finally:
        for sock in idle + slow:
            sock.close()


def test_connections_over_the_limit_get_503_and_are_closed(serve):
    server = serve(slow_app(), max_connections=8, idle_timeout=5.0)
    held = [connect(server) for _ in range(8)]
    time.sleep(0.1)
    with connect(server) as extra:
        extra.sendall(b"GET /v1/models/m HTTP/1.1\r\n\r\n")
        answer = read_response(extra)
        assert answer.startswith(b"HTTP/1.1 503 Service Unavailable")
        assert b"Connection: close" in answer
        assert (
            "--rest_api_max_connections"
            in json.loads(answer.split(b"\r\n\r\n")[1])["error"]
        )
        assert extra.recv(1) == b""  # then closed
    for sock in held:
        sock.close()
    time.sleep(0.1)
    with Client(f"127.0.0.1:{server.server_address[1]}", timeout=2) as client:
        assert client.request("GET", "/v1/models/m")[0] == 200


def test_request_bytes_in_flight_are_bounded_and_given_back(serve):
    budget = ByteBudget(2 << 20)
    seen = []
    server = serve(slow_app(seen=seen), max_body_bytes=1 << 20, budget=budget)
    head = b"POST /v1/models/m:predict HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
    partial = [connect(server) for _ in range(2)]
    for sock in partial:  # two 1 MiB bodies, half sent: both reserved
        sock.sendall(head % (1 << 20) + b"x" * (1 << 19))
    time.sleep(0.2)
    assert budget.in_flight == 2 << 20
    with connect(server) as third:
        third.sendall(head % (1 << 20))
        answer = read_response(third)
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable"), answer[:200]
    assert b"--max_bytes_in_flight" in answer
    partial[0].sendall(b"x" * (1 << 19))  # one body completes and is answered
    assert read_response(partial[0]).startswith(b"HTTP/1.1 200 OK")
    assert seen == [1 << 20]
    partial[1].close()  # the other client gives up: its reservation goes back
    deadline = time.monotonic() + 5
    while budget.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert budget.in_flight == 0
    with Client(f"127.0.0.1:{server.server_address[1]}", timeout=5) as client:
        status, _ = client.request("POST", "/v1/models/m:predict", b"y" * (1 << 20))
    assert status == 200
    partial[0].close()


def test_shutdown_finishes_requests_in_flight_then_refuses(serve):
    server = serve(slow_app(0.5))
    port = server.server_address[1]
    answers = []

    def call():
        with Client(f"127.0.0.1:{port}", timeout=10) as client:
            answers.append(client.request("POST", "/v1/models/m:predict", b"{}"))

    callers = [threading.Thread(target=call) for _ in range(3)]
    for caller in callers:
        caller.start()
    time.sleep(0.2)  # all three are running in the app now
    start = time.perf_counter()
    server.shutdown(drain_seconds=5)
    assert time.perf_counter() - start < 2
    for caller in callers:
        caller.join(timeout=5)
    assert [status for status, _ in answers] == [200, 200, 200]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_drain_that_runs_out_of_time_closes_what_is_left(serve):
    server = serve(slow_app(3.0))
    sock = connect(server)
    sock.sendall(b"GET /v1/models/m HTTP/1.1\r\n\r\n")
    time.sleep(0.1)
    start = time.perf_counter()
    server.shutdown(drain_seconds=0.3)
    assert 0.25 < time.perf_counter() - start < 2
    assert sock.recv(1) == b""
    sock.close()
