"""`Content-Encoding: gzip` request bodies, decompressed within the limits.

TF Serving's REST server accepts gzip-compressed request bodies. The body
limit (`--rest_api_max_request_bytes`) applies to the decompressed size, and
the decompressed bytes count against the bytes in flight, so a gzip bomb (a
few kilobytes that inflate to gigabytes) is refused with 413 once its output
passes the limit: it is decompressed a piece at a time, never all at once.
"""

import zlib

from keras_mtl.serving.http_request import HttpError

_GZIP = zlib.MAX_WBITS | 16  # a gzip header and trailer, not zlib's
_PIECE = 1 << 20  # decompressed bytes produced (and reserved) per step


def _too_large(limit):
    return HttpError(
        413,
        f"Decompressed request body exceeds the limit of {limit} bytes "
        "(--rest_api_max_request_bytes).",
    )


def _reserve(request, budget, count):
    if budget is None:
        return
    if not budget.try_reserve(count):
        raise HttpError(503, budget.busy_message(count))
    request.reserved += count


def decoded_body(request, limit, budget=None):
    """The body of `request` with its content coding removed.

    Args:
        request: An `http_request.Request`.
        limit: The largest decompressed body (413 above it).
        budget: The server's `ByteBudget`; the decompressed bytes are added
            to `request.reserved`, which the server releases once answered.

    Raises:
        HttpError: 413 over the limit, 503 when the budget is spent, 400 for
            a body that is not valid gzip, 415 for another coding.
    """
    encoding = request.content_encoding
    if encoding in ("", "identity"):
        return request.body
    if encoding not in ("gzip", "x-gzip"):
        raise HttpError(
            415,
            f"Unsupported Content-Encoding: {encoding} (gzip and identity are).",
        )
    out = bytearray()
    data = bytes(request.body)
    decompressor = zlib.decompressobj(_GZIP)
    try:
        while True:
            piece = decompressor.decompress(data, min(_PIECE, limit + 1 - len(out)))
            data = decompressor.unconsumed_tail
            if len(out) + len(piece) > limit:
                raise _too_large(limit)
            _reserve(request, budget, len(piece))
            out += piece
            if decompressor.eof:
                data = decompressor.unused_data
                if not data.strip(b"\0"):
                    return out
                decompressor = zlib.decompressobj(_GZIP)  # another gzip member
            elif not piece and not data:
                raise HttpError(400, "Truncated gzip request body")
    except zlib.error as error:
        raise HttpError(400, f"Malformed gzip request body: {error}") from None
