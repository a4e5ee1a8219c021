"""`ByteBudget`: the bytes of requests that the server holds at one time.

A JSON body becomes Python objects and arrays many times its size while it is
decoded, and a gRPC TensorProto can declare a shape far larger than what it
carries; so the REST and gRPC fronts both reserve what a request will hold
(its body, its decoded tensors) before they hold it, and give it back once it
is answered. A request that does not fit now is refused with UNAVAILABLE
(503), which a client may retry; memory stays bounded whatever the clients
send.
"""

import threading

from keras_mtl.serving.status import Code, ServingError


class ByteBudget:
    """A counter of bytes in flight with a ceiling; never blocks.

    Args:
        limit: The most bytes reserved at once; None for no limit.

    Example:

    ```python
    budget = ByteBudget(256 << 20)
    if budget.try_reserve(len(body)):
        try:
            ...
        finally:
            budget.release(len(body))
    ```
    """

    def __init__(self, limit):
        if limit is not None and limit <= 0:
            raise ValueError(
                f"The bytes-in-flight limit must be positive. Received: limit={limit}"
            )
        self.limit = limit
        self.in_flight = 0
        self._lock = threading.Lock()

    def try_reserve(self, count):
        """Reserves `count` bytes if they fit; returns whether they did."""
        with self._lock:
            if self.limit is not None and self.in_flight + count > self.limit:
                return False
            self.in_flight += count
            return True

    def release(self, count):
        with self._lock:
            self.in_flight -= count

    def busy_message(self, count):
        return (
            f"Server is busy: a request of {count} bytes does not fit in the "
            f"{self.limit} bytes of requests in flight (--max_bytes_in_flight, "
            f"{self.in_flight} held now); retry later."
        )

    def reserve_or_raise(self, count):
        """Reserves `count` bytes or raises UNAVAILABLE (RESOURCE_EXHAUSTED
        when `count` alone is over the limit, so a retry cannot help)."""
        if self.try_reserve(count):
            return
        if self.limit is not None and count > self.limit:
            raise ServingError(
                Code.RESOURCE_EXHAUSTED,
                f"A request of {count} bytes is larger than the {self.limit} bytes "
                "the server holds in flight (--max_bytes_in_flight).",
            )
        raise ServingError(Code.UNAVAILABLE, self.busy_message(count))
