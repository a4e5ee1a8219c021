"""The HTTP/1.1 front of the REST API: an event loop and a pool of workers.

One thread accepts connections and reads them with a selector
(`http_loop.EventLoop`); only complete requests go to the `num_threads`
workers, so idle or slow clients hold a socket and a small buffer, never a
worker. Connections are bounded (`max_connections`; one over it is answered
503 and closed), each idles out after `idle_timeout` seconds of silence, and
bodies are bounded one by one (413) and together (a `ByteBudget`, 503). It
keeps what the REST API needs: keep-alive, `Expect: 100-continue`, chunked
request bodies, and each response written with one send on a socket with
TCP_NODELAY (a Python server that writes headers and body separately waits
~40 ms per request for Nagle's algorithm and the client's delayed ACK).
`shutdown(drain_seconds)` stops accepting, lets the requests in flight
finish, then closes.
"""

import logging
import queue
import select
import threading
import time

from keras_mtl.serving.http_encoding import decoded_body
from keras_mtl.serving.http_loop import WOULD_BLOCK, EventLoop
from keras_mtl.serving.http_request import CONTINUE, HttpError, response_bytes
from keras_mtl.serving.protocol import error_body

logger = logging.getLogger("keras_mtl.serving")

__all__ = ["HttpServer", "response_bytes"]

_LINGER_MS = 2  # how long a worker waits for a kept-alive client's next request


class HttpServer(EventLoop):
    """Serves `app(method, target, body) -> (status, body, content_type)`.

    Args:
        address: (host, port) to bind.
        app: The request function; `body` is a bytes-like object.
        num_threads: Requests run at the same time (worker threads).
        idle_timeout: Seconds a connection may stay silent.
        max_body_bytes: The largest request body accepted (413 above it).
        max_connections: Open connections; one more is answered 503.
        budget: A `ByteBudget` for request bodies in flight, or None.
        ssl_context: A server-side `ssl.SSLContext` to serve HTTPS, or None.

    Example:

    ```python
    server = HttpServer(("127.0.0.1", 8501), app)
    threading.Thread(target=server.serve_forever).start()
    ...
    server.shutdown(drain_seconds=5)
    server.server_close()
    ```
    """

    def __init__(
        self,
        address,
        app,
        num_threads=64,
        idle_timeout=30.0,
        max_body_bytes=64 << 20,
        max_connections=512,
        budget=None,
        ssl_context=None,
    ):
        super().__init__(
            address, idle_timeout, max_body_bytes, max_connections, budget, ssl_context
        )
        self.app = app
        self._jobs = queue.SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work, name=f"keras-mtl-rest-{i}", daemon=True)
            for i in range(num_threads)
        ]
        for worker in self._workers:
            worker.start()
        self._running = threading.Event()
        self._finished = threading.Event()

    def serve_forever(self, poll_interval=0.5):
        """Runs the event loop until `shutdown()`."""
        self._running.set()
        try:
            self._run_loop(poll_interval)
        finally:
            self._finished.set()

    def _submit(self, connection, request):
        self._jobs.put((connection, request))

    def _work(self):
        while (job := self._jobs.get()) is not None:
            connection, request = job
            error = None
            while True:
                rest, close = self._respond(connection, request)
                if rest is not None or close or not self._may_linger():
                    break
                try:
                    request, close = self._linger(connection)
                except HttpError as raised:
                    error = raised
                    break
                if request is None:
                    break
            self._give_back(connection, rest, close, error)

    def _respond(self, connection, request):
        """Runs one request and sends its answer; returns (unsent bytes, close)."""
        try:
            body = decoded_body(request, self.max_body_bytes, self.budget)
            status, payload, content_type = self.app(
                request.method, request.target, body
            )
        except HttpError as error:  # a body that does not decompress within limits
            status, payload = error.status, error_body(error.message)
            content_type = "application/json"
        except Exception as error:  # one broken request must not stop the server
            logger.exception("Error on a REST request from %s", connection.address)
            status, content_type = 500, "application/json"
            payload = error_body(f"Internal error: {type(error).__name__}")
        finally:
            request.body = body = None  # the memory goes back before the answer
            connection.reader.release(request)
        close = not request.keep_alive
        data = request.prefix + response_bytes(
            status, payload, content_type, close=close
        )
        return self._send(connection, data), close

    def _may_linger(self):
        return self._drain_deadline is None and self._jobs.empty()

    def _linger(self, connection):
        """Waits a moment for the client's next request on a kept-alive
        connection, so that a client that sends one request after another is
        served by one thread (no hop through the event loop, ~25 us); only
        while no other request waits for a worker. Returns (request or None,
        whether the client closed)."""
        sock = connection.sock
        if self.ssl_context is None or not sock.pending():
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            if not poller.poll(_LINGER_MS):
                return None, False
        try:
            data = sock.recv(65536)
        except WOULD_BLOCK:
            return None, False
        except OSError:
            data = b""
        if not data:
            return None, True
        connection.last_active = time.monotonic()
        reader = connection.reader
        reader.feed(data)
        request = reader.next_request()
        if request is not None and reader.send_continue:
            reader.send_continue = False
            request.prefix = CONTINUE
        return request, False

    @staticmethod
    def _send(connection, data):
        """Sends what the socket takes now; returns the rest, or None."""
        view = memoryview(data)
        try:
            while view:
                view = view[connection.sock.send(view) :]
        except WOULD_BLOCK:
            return view
        except OSError:
            return None  # the client went away; the loop closes the connection
        return None

    def shutdown(self, drain_seconds=0.0):
        """Stops accepting, waits up to `drain_seconds` for the requests in
        flight, then closes every connection and returns."""
        self._drain_deadline = time.monotonic() + drain_seconds
        self._wake()
        if self._running.is_set():
            self._finished.wait()

    def server_close(self):
        for _ in self._workers:
            self._jobs.put(None)
        self._selector.close()
        self._listener.close()
        self._wake_read.close()
        self._wake_write.close()
