"""`ServingError`: a failed request as TF Serving reports it.

TF Serving answers every failure with a canonical status code (gRPC's codes)
and a message. REST turns the code into an HTTP status with the table of
`model_servers/http_server.cc`; gRPC sends it as it is. Keeping one exception
for both fronts is what makes their answers equal.
"""

import enum


class Code(enum.IntEnum):
    """The canonical status codes (`google.rpc.Code`, `grpc.StatusCode`)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
HTTP_STATUS = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
    Code.UNAUTHENTICATED: 401,
}


class ServingError(Exception):
    """A request that failed with a canonical status code.

    Args:
        code: A `Code` (or its name).
        message: What went wrong, worded as TF Serving words it where it has
            a message for the case.

    Example:

    ```python
    raise ServingError(Code.NOT_FOUND, "Servable not found for request: Latest(x)")
    ```
    """

    def __init__(self, code, message):
        self.code = Code[code] if isinstance(code, str) else Code(code)
        self.message = str(message)
        super().__init__(f"{self.code.name}: {self.message}")

    @property
    def http_status(self):
        return HTTP_STATUS[self.code]


def invalid_argument(message):
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message):
    return ServingError(Code.NOT_FOUND, message)
