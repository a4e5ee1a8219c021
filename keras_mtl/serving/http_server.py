"""The HTTP/1.1 front of the REST API: keep-alive, bounded, no Nagle delay.

A small HTTP/1.1 server on the standard library's `socketserver`: one thread
per connection, at most `num_threads` connections served at once (the others
wait in the listen backlog), keep-alive, `Expect: 100-continue`, chunked
request bodies, a maximum body size (413), an idle timeout, and each response
written with one `sendall` on a socket with TCP_NODELAY. (A Python server
that writes headers and body separately waits ~40 ms per request for Nagle's
algorithm and the client's delayed ACK.)
"""

import http
import logging
import socket
import socketserver
import threading

from keras_mtl.serving.protocol import error_body

logger = logging.getLogger("keras_mtl.serving")

MAX_LINE = 65536
MAX_HEADERS = 100


class _BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def _reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def response_bytes(status, body, content_type="application/json", close=False):
    head = (
        f"HTTP/1.1 {status} {_reason(status)}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


class _Connection(socketserver.StreamRequestHandler):
    """Serves the requests of one connection until it closes or idles out."""

    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.settimeout(self.server.idle_timeout)
        super().setup()

    def handle(self):
        try:
            while self._one_request():
                pass
        except (TimeoutError, ConnectionError, OSError):
            pass  # the client went away or idled out

    def _send(self, data):
        self.request.sendall(data)

    def _one_request(self):
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False
        try:
            method, target, version, headers = self._parse_head(line)
            keep_alive = self._keep_alive(version, headers)
            body = self._read_body(headers)
        except _BadRequest as error:
            self._send(
                response_bytes(error.status, error_body(error.message), close=True)
            )
            self._drain()
            return False
        status, payload, content_type = self.server.app(method, target, body)
        self._send(response_bytes(status, payload, content_type, close=not keep_alive))
        return keep_alive

    def _parse_head(self, line):
        if len(line) > MAX_LINE:
            raise _BadRequest(414, "Request line too long")
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, "Malformed HTTP request line")
        headers = {}
        for _ in range(MAX_HEADERS + 1):
            header = self.rfile.readline(MAX_LINE + 1)
            if header in (b"\r\n", b"\n"):
                return parts[0], parts[1], parts[2], headers
            if not header:
                raise ConnectionError("connection closed inside the headers")
            if len(header) > MAX_LINE or b":" not in header:
                raise _BadRequest(400, "Malformed HTTP header")
            name, _, value = header.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        raise _BadRequest(431, "Too many HTTP headers")

    @staticmethod
    def _keep_alive(version, headers):
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    def _drain(self, seconds=2.0, limit=64 << 20):
        """Reads what the client still sends, so that closing does not reset
        the connection before it has read the error."""
        try:
            self.request.shutdown(socket.SHUT_WR)
            self.request.settimeout(seconds)
            while limit > 0:
                data = self.request.recv(65536)
                if not data:
                    break
                limit -= len(data)
        except OSError:
            pass

    def _read_body(self, headers):
        limit = self.server.max_body_bytes
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            length = 0 if chunked else int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest(400, "Malformed Content-Length header") from None
        if length < 0:
            raise _BadRequest(400, "Malformed Content-Length header")
        if length > limit:
            raise _BadRequest(
                413,
                f"Request body of {length} bytes exceeds the limit of {limit} bytes "
                "(--rest_api_max_request_bytes).",
            )
        if headers.get("expect", "").lower() == "100-continue":
            self._send(b"HTTP/1.1 100 Continue\r\n\r\n")
        if chunked:
            return self._read_chunked(limit)
        body = self.rfile.read(length)
        if len(body) != length:
            raise ConnectionError("connection closed inside the body")
        return body

    def _read_chunked(self, limit):
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "Malformed chunked request body") from None
            if size == 0:
                while self.rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > limit:
                raise _BadRequest(
                    413,
                    f"Request body exceeds the limit of {limit} bytes "
                    "(--rest_api_max_request_bytes).",
                )
            chunks.append(self.rfile.read(size))
            self.rfile.readline(MAX_LINE + 1)


class HttpServer(socketserver.TCPServer):
    """Serves `app(method, target, body) -> (status, body, content_type)`.

    Args:
        address: (host, port) to bind.
        app: The request function.
        num_threads: Connections served at the same time.
        idle_timeout: Seconds a connection may stay silent.
        max_body_bytes: The largest request body accepted.

    Example:

    ```python
    server = HttpServer(("127.0.0.1", 8501), app)
    threading.Thread(target=server.serve_forever).start()
    ```
    """

    allow_reuse_address = True
    request_queue_size = 256

    def __init__(
        self, address, app, num_threads=64, idle_timeout=30.0, max_body_bytes=64 << 20
    ):
        self.app = app
        self.idle_timeout = idle_timeout
        self.max_body_bytes = max_body_bytes
        self._slots = threading.BoundedSemaphore(num_threads)
        self._closing = threading.Event()
        super().__init__(address, _Connection)

    def process_request(self, request, client_address):
        while not self._slots.acquire(timeout=0.5):
            if self._closing.is_set():
                self.shutdown_request(request)
                return
        thread = threading.Thread(
            target=self._serve, args=(request, client_address), daemon=True
        )
        thread.start()

    def _serve(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except Exception:  # one broken connection must not stop the server
            logger.exception("Error on a REST connection from %s", client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def shutdown(self):
        self._closing.set()
        super().shutdown()
