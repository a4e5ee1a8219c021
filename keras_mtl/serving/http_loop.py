"""The event loop under the REST front: accept, read, write, idle out.

`EventLoop` owns the listening socket and every connection. One thread runs
it: it accepts, reads each connection into its `RequestReader` (straight into
the body's buffer once the head is parsed), writes what the socket does not
take at once, answers errors, closes connections that idle out, and refuses
connections over the limit with 503. With an `ssl.SSLContext` it serves
TLS: the handshake runs in the loop without blocking, and bytes that the TLS
layer has decrypted but not yet handed over (`pending()`) are read before the
loop waits again. Each complete request goes to
`_submit`, which a subclass hands to its workers; a worker gives the
connection back with `_give_back`. Nothing here waits on a client.
"""

import queue
import selectors
import socket
import ssl
import time

from keras_mtl.serving.http_request import (
    CONTINUE,
    HttpError,
    RequestReader,
    error_response,
)

_DRAIN_ERROR_SECONDS = 2.0  # how long an error's connection is read before closing
_MAX_REFUSED = 64  # refused connections being answered 503 at once
# What a non-blocking socket raises when it cannot go on now; a TLS socket
# raises SSLWantRead/WriteError (OSErrors, not BlockingIOErrors).
WOULD_BLOCK = (
    BlockingIOError,
    InterruptedError,
    ssl.SSLWantReadError,
    ssl.SSLWantWriteError,
)


class _Connection:
    def __init__(self, sock, address, reader):
        self.sock, self.address, self.reader = sock, address, reader
        self.last_active = time.monotonic()
        self.busy = False  # a worker holds it
        self.out = None  # a memoryview of response bytes still to write
        self.close_after_write = False
        self.draining_until = None  # reading and discarding until then
        self.refused = False  # answered 503: over the connection limit
        self.events = 0  # what the selector watches for
        self.handshaking = False  # a TLS handshake is under way


class EventLoop:
    """Accepts and reads connections; a subclass runs the requests.

    Args:
        address: (host, port) to bind.
        idle_timeout: Seconds a connection may stay silent.
        max_body_bytes: The largest request body accepted (413 above it).
        max_connections: Open connections; one more is answered 503.
        budget: A `ByteBudget` for request bodies in flight, or None.
        ssl_context: A server-side `ssl.SSLContext` to serve TLS, or None.
    """

    def __init__(
        self,
        address,
        idle_timeout,
        max_body_bytes,
        max_connections,
        budget,
        ssl_context=None,
    ):
        self.ssl_context = ssl_context
        self.idle_timeout = idle_timeout
        self.max_body_bytes = max_body_bytes
        self.max_connections = max_connections
        self.budget = budget
        self._listener = socket.create_server(address, backlog=1024)
        self._listener.setblocking(False)
        self.server_address = self._listener.getsockname()[:2]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._connections = {}  # socket -> _Connection
        self._refused = 0
        self._returned = queue.SimpleQueue()  # connections workers are done with
        self._drain_deadline = None

    def _submit(self, connection, request):
        raise NotImplementedError

    def _give_back(self, connection, rest, close, error=None):
        """From a worker: the connection, unsent response bytes, whether to
        close, and an `HttpError` met reading its next request, or None."""
        self._returned.put((connection, rest, close, error))
        self._wake()

    def _wake(self):
        try:
            self._wake_write.send(b"x")
        except OSError:
            pass  # the wake-up pipe is full (the loop will look) or closed

    # The event loop ---------------------------------------------------------

    def _run_loop(self, poll_interval=0.5):
        """Runs until a shutdown has drained; closes every connection."""
        next_sweep = time.monotonic()
        try:
            while self._drain_deadline is None or not self._drained():
                timeout = min(poll_interval, max(0.0, next_sweep - time.monotonic()))
                for key, events in self._selector.select(timeout):
                    self._dispatch(key.fileobj, events)
                self._take_returned()
                if time.monotonic() >= next_sweep:
                    self._sweep()
                    next_sweep = time.monotonic() + min(1.0, self.idle_timeout / 4)
        finally:
            for connection in list(self._connections.values()):
                self._close(connection)

    def _dispatch(self, sock, events):
        if sock is self._listener:
            self._accept()
        elif sock is self._wake_read:
            try:
                self._wake_read.recv(4096)
            except BlockingIOError:
                pass
        else:
            connection = self._connections.get(sock)
            if connection is None:
                return
            if connection.handshaking:
                self._handshake(connection)
            elif events & selectors.EVENT_WRITE:
                self._write(connection)
            elif events & selectors.EVENT_READ:
                self._read(connection)

    def _accept(self):
        for _ in range(64):
            try:
                sock, address = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # the listener was closed by a shutdown
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
            connection = _Connection(
                sock, address, RequestReader(self.max_body_bytes, self.budget)
            )
            self._connections[sock] = connection
            if len(self._connections) - self._refused > self.max_connections:
                self._refuse(connection)
            elif self.ssl_context is not None:
                connection.handshaking = True
                self._handshake(connection)
            else:
                self._watch(connection, selectors.EVENT_READ)

    def _handshake(self, connection):
        """Goes on with a TLS handshake; watches for what it needs next."""
        try:
            connection.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._watch(connection, selectors.EVENT_READ)
            return
        except ssl.SSLWantWriteError:
            self._watch(connection, selectors.EVENT_WRITE)
            return
        except OSError:  # a failed handshake (no client certificate, not TLS)
            self._close(connection)
            return
        connection.handshaking = False
        connection.last_active = time.monotonic()
        self._watch(connection, selectors.EVENT_READ)
        if connection.sock.pending():
            self._read(connection)

    def _refuse(self, connection):
        if self._refused >= _MAX_REFUSED or self.ssl_context is not None:
            # (a TLS client is closed unanswered: a 503 needs a handshake first)
            self._close(connection)
            return
        self._refused += 1
        connection.refused = True
        message = (
            f"Server is busy: {self.max_connections} connections are open "
            "(--rest_api_max_connections); retry later."
        )
        self._watch(connection, selectors.EVENT_READ)
        self._fail(connection, error_response(503, message))

    def _read(self, connection):
        self._read_once(connection)
        while (
            self.ssl_context is not None
            and connection.sock in self._connections
            and not connection.busy
            and connection.events == selectors.EVENT_READ
            and connection.sock.pending()
        ):
            self._read_once(connection)  # decrypted bytes the selector cannot see

    def _read_once(self, connection):
        reader = connection.reader
        try:
            space = reader.body_space()
            if space is not None and connection.draining_until is None:
                count = connection.sock.recv_into(space)
                data = None
            else:
                data = connection.sock.recv(65536)
                count = len(data)
        except WOULD_BLOCK:
            return
        except OSError:
            count = 0
        if count == 0:
            self._close(connection)
            return
        connection.last_active = time.monotonic()
        if connection.draining_until is not None:
            return  # an error was answered; what follows is read and dropped
        if data is None:
            reader.received(count)
        else:
            reader.feed(data)
        self._next_request(connection)

    def _next_request(self, connection):
        """Hands a complete request to a worker, if one is buffered."""
        try:
            request = connection.reader.next_request()
        except HttpError as error:
            self._fail(connection, error_response(error.status, error.message))
            return
        if connection.reader.send_continue:
            connection.reader.send_continue = False
            if request is None:
                self._queue_write(connection, CONTINUE)
            else:  # the body came with the head: both answers in one write
                request.prefix = CONTINUE
        if request is None:
            return
        if self._drain_deadline is not None:
            request.keep_alive = False
        connection.busy = True
        self._watch(connection, 0)
        self._submit(connection, request)

    def _fail(self, connection, response):
        """Answers an error, then reads and drops what the client still sends,
        so that closing does not reset the connection before it reads it."""
        connection.reader.abandon()
        connection.close_after_write = True
        self._queue_write(connection, response)

    # Writing, closing, idling out ---------------------------------------------

    def _watch(self, connection, events):
        current = connection.events
        if events == current:
            return
        if not events:
            self._selector.unregister(connection.sock)
        elif current:
            self._selector.modify(connection.sock, events)
        else:
            self._selector.register(connection.sock, events)
        connection.events = events

    def _queue_write(self, connection, data):
        pending = bytes(connection.out) if connection.out is not None else b""
        connection.out = memoryview(pending + data)
        self._write(connection)

    def _write(self, connection):
        try:
            while connection.out:
                sent = connection.sock.send(connection.out)
                connection.out = connection.out[sent:]
        except WOULD_BLOCK:
            self._watch(connection, selectors.EVENT_WRITE)
            return
        except OSError:
            self._close(connection)
            return
        connection.out = None
        connection.last_active = time.monotonic()
        if connection.close_after_write:
            self._start_draining(connection)
        else:
            self._watch(connection, selectors.EVENT_READ)
            if connection.reader.data or connection.reader.send_continue:
                self._next_request(connection)  # a pipelined request
            elif self.ssl_context is not None and connection.sock.pending():
                self._read(connection)

    def _start_draining(self, connection):
        connection.draining_until = time.monotonic() + _DRAIN_ERROR_SECONDS
        try:
            connection.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(connection)
            return
        self._watch(connection, selectors.EVENT_READ)

    def _close(self, connection):
        connection.reader.abandon()
        if self._connections.pop(connection.sock, None) is None:
            return
        if connection.refused:
            self._refused -= 1
        self._watch(connection, 0)
        connection.sock.close()

    def _take_returned(self):
        while True:
            try:
                connection, rest, close, error = self._returned.get_nowait()
            except queue.Empty:
                return
            connection.busy = False
            if connection.sock not in self._connections:
                continue
            connection.last_active = time.monotonic()
            if error is not None:
                connection.out = rest
                self._fail(connection, error_response(error.status, error.message))
                continue
            if rest is None and (close or self._drain_deadline is not None):
                self._close(connection)
                continue
            connection.close_after_write = close or self._drain_deadline is not None
            if rest is not None:
                connection.out = rest
            self._write(connection)

    def _sweep(self):
        now = time.monotonic()
        for connection in list(self._connections.values()):
            if connection.busy:
                continue
            if connection.draining_until is not None:
                if now > connection.draining_until:
                    self._close(connection)
            elif now - connection.last_active > self.idle_timeout:
                self._close(connection)  # idled out, or too slow to send

    def _drained(self):
        """During a shutdown: True once nothing is in flight or time is up."""
        if self._listener.fileno() != -1:
            self._selector.unregister(self._listener)
            self._listener.close()
        for connection in list(self._connections.values()):
            idle = not connection.busy and connection.out is None
            if idle and not connection.reader.started:
                self._close(connection)
        return not self._connections or time.monotonic() >= self._drain_deadline
