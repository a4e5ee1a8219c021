"""Large numeric JSON arrays straight to numpy, without Python lists.

A `:predict` body of 64 images of 32x32x3 holds 196,608 numbers in 65,536
innermost lists. Parsed as JSON, each number and each list is a Python
object, which `np.array` then walks to find the shape; both steps, and
freeing the document, cost more than the model call. `parse_with_arrays`
finds the long stretches of a body made only of number characters, brackets,
commas and whitespace that are each one regular nested array of JSON
numbers, and reads each flat into one buffer of float64 or int64 with its
shape:

- by the compiled scanner `_json_numbers` (`_json_numbers.c`, built by
  `pip install` where a C compiler is found): one pass over the body with
  the GIL released, checking the JSON and the shape and parsing the numbers
  (correctly rounded) as it goes;
- where it is not built, with bytes methods (the shape from the brackets)
  and simdjson (pysimdjson), which checks the JSON syntax and writes the
  numbers.

Each such array is replaced by a placeholder string carrying a random nonce,
and the rest of the body is parsed as JSON as usual; the placeholders are
then swapped for the arrays.

It answers None whenever it is not sure (a stretch that is not one regular
array is left as text; a placeholder that does not come back as a whole JSON
value, such as one inside a string, gives None), and the caller then parses
the body as before, so what is accepted, answered and refused is unchanged.
The arrays are what `np.array` gives for the same nested lists: int64 when
every number is an integer, float64 otherwise.

Example:

```python
document = parse_with_arrays(body)  # {"instances": [{"image": ndarray}, ...]} or None
```
"""

import functools
import math
import secrets
import threading

import numpy as np

try:  # the serving extra; without it bodies are parsed the usual way
    import orjson
    import simdjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = simdjson = None
try:  # built by `pip install` where a C compiler is found (setup.py)
    from keras_mtl.serving import _json_numbers
except ImportError:  # pragma: no cover - depends on the environment
    _json_numbers = None

MIN_BODY_BYTES = 64 << 10  # smaller bodies parse fast enough as they are
MIN_ARRAY_BYTES = 4 << 10  # shorter stretches are left to the JSON parser
MAX_RANK = 33  # json_tensor.MAX_RANK levels below the instances list
# Skeletons up to this size have their shapes remembered (32 of them at most)
CACHED_SKELETON_BYTES = 64 << 10

_WHITESPACE = b" \t\n\r"
_NUMBER = b"0123456789.eE+-"
_REGION = _NUMBER + b"[]," + _WHITESPACE
# bytes -> 1 for the characters a numeric array is written with, else 0
_MASK = bytes(1 if c in _REGION else 0 for c in range(256))
# A simdjson parser is not thread-safe, and it keeps buffers of about 4x the
# largest document it parsed. A few parsers that parsed small bodies are kept
# for the next request; one that parsed a larger body is dropped, so memory
# held between requests stays bounded whatever the bodies and threads.
KEPT_PARSERS = 2
KEEP_PARSER_BELOW_BYTES = 4 << 20
_kept = []
_kept_lock = threading.Lock()


def array_reader():
    """How the long numeric arrays of REST bodies are read, for the server's
    start-up log: by the compiled scanner, by its pysimdjson fallback, or as
    JSON lists."""
    if orjson is not None and _json_numbers is not None:
        return "Large numeric JSON arrays are read by the compiled scanner"
    if orjson is not None and simdjson is not None:
        return (
            "Large numeric JSON arrays are read with pysimdjson: the compiled "
            "scanner, which reads them faster, is not built (reinstall "
            "keras-mtl where a C compiler and the Python headers are found)"
        )
    return (
        "Large numeric JSON arrays are read as JSON lists: "
        'pip install "keras-mtl[serving]" to read them straight into numpy'
    )


def _shape(skeleton):
    """The shape whose nested lists are written `skeleton` (brackets and
    commas only), or None when it is not one regular array."""
    depth = len(skeleton) - len(skeleton.lstrip(b"["))
    if not 0 < depth <= MAX_RANK:
        return None
    shape = []
    element = 0  # the length of one element of the level below, written out
    for level in range(depth - 1, -1, -1):
        close = skeleton.find(b"]" * (depth - level))
        if close < 0:
            return None
        # "[" ... "]" of the first list at `level`: it ends the first run of
        # depth - level closing brackets
        length = close + depth - 2 * level
        if level == depth - 1:
            count = skeleton.count(b",", level, close) + 1
        else:
            count, rest = divmod(length - 1, element + 1)
            if rest or count < 1:
                return None
        shape.insert(0, count)
        element = length
    shape = tuple(shape)
    return shape if _written(shape) == skeleton else None


@functools.lru_cache(maxsize=32)
def _written(shape):
    """The brackets and commas of an array of `shape`, written out."""
    written = b"[" + b"," * (shape[-1] - 1) + b"]"
    for count in reversed(shape[:-1]):
        written = b"[" + b",".join([written] * count) + b"]"
    return written


def _array_shape(text):
    """The shape of `text` (one stretch, stripped) if it is written as one
    regular nested array, else None."""
    if text[:1] != b"[" or text[-1:] != b"]":
        return None
    # "[]" in the skeleton is a list of one number, or an empty one; simdjson
    # then refuses what is not JSON ("[]2"), and an empty list leaves fewer
    # numbers than the shape holds, which `_arrays` refuses
    skeleton = text.translate(None, _NUMBER + _WHITESPACE)
    if len(skeleton) <= CACHED_SKELETON_BYTES:
        return _known_shape(bytes(skeleton))  # (a bytearray body's is one too)
    return _shape(skeleton)


@functools.lru_cache(maxsize=32)
def _known_shape(skeleton):
    """`_shape`, remembered: the arrays of a body, and of one request after
    another, are mostly written alike (64 images: 64 equal skeletons)."""
    return _shape(skeleton)


def _flat(text, floats):
    """The numbers of `text` (JSON: one array, or several joined by commas in
    one outer array), flattened in order, as np.array makes them from the
    same lists: float64 when `floats`, else int64; None when it is not
    valid JSON, holds anything but numbers, or an integer is past int64.

    simdjson's `as_buffer` flattens nested arrays whatever their lengths,
    so the caller checks the shape from the brackets first.
    """
    with _kept_lock:
        parser = _kept.pop() if _kept else None
    if parser is None:
        parser = simdjson.Parser()
    try:
        buffer = parser.parse(text).as_buffer(of_type="d" if floats else "i")
    except (ValueError, TypeError, RuntimeError):
        buffer = None  # invalid JSON, a non-number, out of range, a big integer
    if len(text) <= KEEP_PARSER_BELOW_BYTES:
        with _kept_lock:
            if len(_kept) < KEPT_PARSERS:
                _kept.append(parser)
    if buffer is None:
        return None
    # the buffer is the array's own memory, not the parser's
    return np.frombuffer(buffer, dtype=np.float64 if floats else np.int64)


def _has_float(text):
    return b"." in text or b"e" in text or b"E" in text


def _arrays(candidates):
    """An array (or None) for each (text, shape) of `candidates`.

    The numbers of all of them are parsed in one call and made one array
    (few long calls rather than many short ones: a thread that holds the GIL
    in long calls is not made to hand it over every 5 ms); when that fails,
    each is parsed alone, so that a bad one is left as text.
    """
    sizes = [math.prod(shape) for _, shape in candidates]
    floats = [_has_float(text) for text, _ in candidates]
    if len(set(floats)) == 1:
        joined = b"[" + b",".join(text for text, _ in candidates) + b"]"
        array = _flat(joined, floats[0])
        if array is not None and len(array) == sum(sizes):
            offsets = np.cumsum([0] + sizes)
            return [
                array[offsets[i] : offsets[i + 1]].reshape(shape)
                for i, (_, shape) in enumerate(candidates)
            ]
    arrays = []
    for size, has_float, (text, shape) in zip(sizes, floats, candidates, strict=True):
        array = _flat(text, has_float)
        ok = array is not None and len(array) == size
        arrays.append(array.reshape(shape) if ok else None)
    return arrays


def _found_compiled(body):
    """(begin, end, array) of each long regular numeric array of `body`, by
    the compiled scanner: one pass, with the GIL released."""
    found = _json_numbers.find_arrays(body, MIN_ARRAY_BYTES, MAX_RANK)
    return [
        (begin, end, np.frombuffer(values, np.float64 if floats else np.int64).reshape(shape))
        for begin, end, values, shape, floats in found
    ]


def _found_simdjson(body):
    """`_found_compiled` where the compiled scanner is not built: the
    stretches found with bytes methods, shapes from their brackets, numbers
    by simdjson (an array of None where it refused)."""
    mask = body.translate(_MASK)
    long_run = b"\x01" * MIN_ARRAY_BYTES
    spans, candidates = [], []
    position = 0
    while (start := mask.find(long_run, position)) >= 0:
        begin = mask.rfind(b"\x00", 0, start) + 1
        end = mask.find(b"\x00", start)
        end = len(body) if end < 0 else end
        position = end
        text = body[begin:end]
        stripped = text.lstrip(_WHITESPACE + b",")
        begin += len(text) - len(stripped)
        stripped = stripped.rstrip(_WHITESPACE + b",")
        shape = _array_shape(stripped)
        if shape is not None:  # (otherwise left as text for the JSON parser)
            spans.append((begin, begin + len(stripped)))
            candidates.append((stripped, shape))
    if not candidates:
        return []
    arrays = _arrays(candidates)
    return [(begin, end, array) for (begin, end), array in zip(spans, arrays, strict=True)]


def _substitute(value, arrays, found):
    """`value` with each placeholder string replaced by its array."""
    if type(value) is str:
        array = arrays.get(value)
        if array is not None:
            found.append(value)
            return array
        return value
    if type(value) is dict:
        return {key: _substitute(item, arrays, found) for key, item in value.items()}
    if type(value) is list:
        return [_substitute(item, arrays, found) for item in value]
    return value


def parse_with_arrays(body):
    """The JSON object `body`, its long regular numeric arrays as numpy
    arrays; None when it has none, or when anything is unsure."""
    if orjson is None or len(body) < MIN_BODY_BYTES:
        return None
    if _json_numbers is not None:
        found = _found_compiled(body)
    elif simdjson is not None:
        found = _found_simdjson(body)
    else:  # pragma: no cover - depends on the environment
        return None
    nonce = secrets.token_hex(16)
    pieces, arrays, done = [], {}, 0
    for begin, end, array in found:
        if array is None:
            continue
        key = f"{nonce}:{len(arrays)}"
        arrays[key] = array
        pieces += [body[done:begin], b'"', key.encode(), b'"']
        done = end
    if not arrays:
        return None
    pieces.append(body[done:])
    try:
        document = orjson.loads(b"".join(pieces))
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict:
        return None
    found = []
    try:
        document = _substitute(document, arrays, found)
    except RecursionError:
        return None
    if sorted(found) != sorted(arrays):
        return None  # a placeholder inside a string, or a key: not a value
    return document
