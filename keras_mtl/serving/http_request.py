"""Incremental HTTP/1.1 request parsing for the REST front's event loop.

`RequestReader` is fed the bytes of one connection as they arrive and returns
each request once it is complete, so that no thread waits on a slow or idle
client. It reads the head (request line and headers), then a body framed by
`Content-Length` (received straight into one buffer of that size) or by
chunked transfer coding. The body size is checked against the per-request
limit (413) as soon as it is known, and reserved from the server's budget of
bytes in flight (503 when the budget is spent) before it is received.
"""

import dataclasses
import http
import re

from keras_mtl.serving.protocol import error_body

MAX_LINE = 65536
MAX_HEAD = 256 * 1024
MAX_HEADERS = 100
_END_OF_LINE = re.compile(rb"\r?\n")
_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HttpError(Exception):
    """A request the server answers with an error, then closes the connection."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def _reason(status):
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def response_bytes(status, body, content_type="application/json", close=False):
    """One HTTP/1.1 response, head and body, to be written with one send."""
    head = (
        f"HTTP/1.1 {status} {_reason(status)}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def error_response(status, message):
    return response_bytes(status, error_body(message), close=True)


@dataclasses.dataclass
class Request:
    method: str
    target: str
    keep_alive: bool
    body: bytearray
    reserved: int = 0  # bytes taken from the budget, given back once answered
    prefix: bytes = b""  # written before the response ("100 Continue")
    content_encoding: str = ""  # "gzip": decompressed by the worker


def _parse_head(head):
    lines = _END_OF_LINE.split(bytes(head))
    parts = lines[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "Malformed HTTP request line")
    if len(lines) - 1 > MAX_HEADERS:
        raise HttpError(431, "Too many HTTP headers")
    headers = {}
    for line in lines[1:]:
        if len(line) > MAX_LINE or b":" not in line:
            raise HttpError(400, "Malformed HTTP header")
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    if parts[2] == "HTTP/1.0":
        keep_alive = connection == "keep-alive"
    else:
        keep_alive = connection != "close"
    return parts[0], parts[1], keep_alive, headers


class RequestReader:
    """Turns the bytes of one connection into `Request`s.

    Args:
        max_body_bytes: The largest body accepted (413 above it).
        budget: A `ByteBudget` that each body is reserved from before it is
            received (503 when it is spent), or None.

    Example:

    ```python
    reader = RequestReader(1 << 20)
    reader.feed(sock.recv(65536))
    request = reader.next_request()  # None until a whole request is there
    ```
    """

    def __init__(self, max_body_bytes, budget=None):
        self.max_body_bytes = max_body_bytes
        self.budget = budget
        self.data = bytearray()  # received bytes not yet parsed
        self.send_continue = False  # the loop sends "100 Continue" when set
        self._request = None  # the request whose body is being received
        self._filled = 0  # Content-Length bodies: bytes received so far
        self._chunked = False

    @property
    def started(self):
        """True while a request is partly received."""
        return bool(self.data) or self._request is not None

    def feed(self, data):
        self.data += data

    def body_space(self):
        """The unfilled part of a Content-Length body, to receive into, or None."""
        request = self._request
        if request is None or self._chunked or self.data:
            return None
        return memoryview(request.body)[self._filled :]

    def received(self, count):
        """Records `count` bytes received straight into `body_space()`."""
        self._filled += count

    def release(self, request):
        if self.budget is not None and request.reserved:
            self.budget.release(request.reserved)
            request.reserved = 0

    def abandon(self):
        """Gives back what a partly received request holds (connection closed)."""
        if self._request is not None:
            self.release(self._request)
            self._request = None
        self.data = bytearray()

    def next_request(self):
        """The next complete `Request`, or None; raises `HttpError`."""
        if self._request is None and not self._start_request():
            return None
        if self._chunked:
            done = self._read_chunks()
        else:
            done = self._fill_body()
        if not done:
            return None
        request, self._request = self._request, None
        return request

    def _start_request(self):
        match = _END_OF_HEAD.search(self.data, 0, MAX_HEAD + 4)
        if match is None:
            first_line = _END_OF_LINE.search(self.data, 0, MAX_LINE + 2)
            if first_line is None and len(self.data) > MAX_LINE:
                raise HttpError(414, "Request line too long")
            if len(self.data) > MAX_HEAD:
                raise HttpError(431, "HTTP request head too large")
            return False
        if match.start() > MAX_LINE and not _END_OF_LINE.search(
            self.data, 0, MAX_LINE + 2
        ):
            raise HttpError(414, "Request line too long")
        head = self.data[: match.start()]
        del self.data[: match.end()]
        method, target, keep_alive, headers = _parse_head(head)
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = 0 if self._chunked else self._content_length(headers)
        request = Request(method, target, keep_alive, bytearray(length))
        request.content_encoding = headers.get("content-encoding", "").lower()
        self._reserve(request, length)
        self._request, self._filled = request, 0
        self.send_continue = headers.get("expect", "").lower() == "100-continue"
        return True

    def _content_length(self, headers):
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "Malformed Content-Length header") from None
        if length < 0:
            raise HttpError(400, "Malformed Content-Length header")
        if length > self.max_body_bytes:
            raise HttpError(
                413,
                f"Request body of {length} bytes exceeds the limit of "
                f"{self.max_body_bytes} bytes (--rest_api_max_request_bytes).",
            )
        return length

    def _reserve(self, request, count):
        if self.budget is None or count == 0:
            return
        if not self.budget.try_reserve(count):
            self.release(request)
            raise HttpError(503, self.budget.busy_message(count))
        request.reserved += count

    def _fill_body(self):
        body = self._request.body
        if self.data and self._filled < len(body):
            take = min(len(body) - self._filled, len(self.data))
            body[self._filled : self._filled + take] = self.data[:take]
            del self.data[:take]
            self._filled += take
        return self._filled == len(body)

    def _read_chunks(self):
        request = self._request
        while True:
            line = _END_OF_LINE.search(self.data, 0, MAX_LINE + 2)
            if line is None:
                if len(self.data) > MAX_LINE:
                    raise HttpError(400, "Malformed chunked request body")
                return False
            try:
                size = int(bytes(self.data[: line.start()]).split(b";")[0], 16)
            except ValueError:
                raise HttpError(400, "Malformed chunked request body") from None
            if size == 0:
                return self._read_trailers(line.end())
            if len(request.body) + size > self.max_body_bytes:
                self.release(request)
                raise HttpError(
                    413,
                    f"Request body exceeds the limit of {self.max_body_bytes} "
                    "bytes (--rest_api_max_request_bytes).",
                )
            end = line.end() + size
            if len(self.data) < end + 1 or (
                self.data[end : end + 1] == b"\r" and len(self.data) < end + 2
            ):
                return False  # the chunk (and its line end) is not all here
            self._reserve(request, size)
            request.body += self.data[line.end() : end]
            del self.data[: end + (2 if self.data[end : end + 1] == b"\r" else 1)]

    def _read_trailers(self, start):
        end = _END_OF_HEAD.search(b"\r\n" + self.data[start:])
        if end is None:
            return False
        del self.data[: start + end.end() - 2]
        return True
