"""TF Serving's JSON values as tensors, and tensors as JSON text.

The value-level half of `tensorflow_serving/util/json_tensor.cc`: one JSON
value (a number, a string, `{"b64": ...}`, nested lists) becomes an array of
a signature's dtype with TF Serving's checks and messages (wrong type, ragged
lists, lossy numbers), and an output array becomes JSON text written the way
TF Serving writes it: floats with six significant digits when they
round-trip and nine otherwise, `NaN` / `Infinity` rather than `null`, strings
of outputs named `*_bytes` as `{"b64": ...}`.

`fast_array` converts well-formed values with numpy and answers None when it
is unsure; `tensor` is the element-by-element path that raises TF Serving's
errors.

Example:

```python
array = tensor([[1, 2], [3, 4]], tf.float32)
text = nest(json_tokens(array, False), array.shape)  # "[[1.0, 2.0], [3.0, 4.0]]"
```
"""

import base64
import binascii
import json
import math
import struct

import numpy as np
import tensorflow as tf

from keras_mtl.serving.status import Code, ServingError, invalid_argument

BYTES_SUFFIX = "_bytes"  # outputs named *_bytes are written as {"b64": ...}
MAX_RANK = 32  # numpy arrays have at most 64 dimensions
MAX_MESSAGE_VALUE = 256  # characters of a JSON value quoted in an error

_TYPE_NAMES = {tf.float32: "float", tf.float64: "double", tf.float16: "half"}
_INT_RANGES = {
    tf.int8: (-(2**7), 2**7 - 1),
    tf.int16: (-(2**15), 2**15 - 1),
    tf.int32: (-(2**31), 2**31 - 1),
    tf.int64: (-(2**63), 2**63 - 1),
    tf.uint8: (0, 2**8 - 1),
    tf.uint16: (0, 2**16 - 1),
    tf.uint32: (0, 2**32 - 1),
    tf.uint64: (0, 2**64 - 1),
}
# Largest integers a float type holds exactly (IsLosslessDecimal in TF Serving).
_MAX_EXACT_INT = {tf.float32: 2**24 - 1, tf.float64: 2**53 - 1}
_FLOAT_MAX = {tf.float32: float(np.finfo(np.float32).max), tf.float64: math.inf}
_INT64_MAX = 2**63 - 1
# Lists and outputs up to this many values are checked and written in plain
# Python: for a few values that is faster than numpy's array-wide steps (a
# batch-1 request of the adult model: 12 inputs of one value, 8 outputs).
SMALL = 16
_FLOAT32 = struct.Struct("f")


def type_name(dtype):
    """TF's DataTypeString: `float`, `double`, `int32`, `string`, ..."""
    return _TYPE_NAMES.get(dtype, dtype.name)


def json_text(value):
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > MAX_MESSAGE_VALUE:
        text = text[:MAX_MESSAGE_VALUE] + "..."
    return text


def json_type(value):
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def format_error(value, *parts):
    return invalid_argument(f"JSON Value: {json_text(value)} " + "".join(parts))


def is_b64(value):
    return (
        isinstance(value, dict)
        and len(value) == 1
        and isinstance(value.get("b64"), str)
    )


def decode_b64(value):
    if not is_b64(value):
        raise format_error(value, "not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument("Unable to base64 decode") from None


def _type_error(value, dtype):
    return invalid_argument(
        f"JSON Value: {json_text(value)} Type: {json_type(value)} is not of "
        f"expected type: {type_name(dtype)}"
    )


def is_lossless(value, dtype):
    if type(value) is int and -(2**63) <= value < 2**64:
        return abs(value) <= _MAX_EXACT_INT[dtype]
    try:
        value = float(value)
    except OverflowError:
        return False
    return not math.isfinite(value) or abs(value) <= _FLOAT_MAX[dtype]


def _scalar(value, dtype):
    """One JSON leaf as a Python value of `dtype` (AddValueToTensor)."""
    if dtype == tf.string:
        if isinstance(value, dict):
            return decode_b64(value)
        if not isinstance(value, str):
            raise _type_error(value, dtype)
        return value.encode("utf-8")
    if isinstance(value, dict):
        raise _type_error(value, dtype)
    if dtype in (tf.float32, tf.float64):
        if type(value) not in (int, float):
            raise _type_error(value, dtype)
        if not is_lossless(value, dtype):
            raise invalid_argument(
                f"Cannot convert JSON value: {json_text(value)} to "
                f"{type_name(dtype)} without loss of precision."
            )
        return float(value)
    if dtype == tf.bool:
        if type(value) is not bool:
            raise _type_error(value, dtype)
        return value
    if dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if type(value) is not int or not low <= value <= high:
            raise _type_error(value, dtype)
        return value
    raise ServingError(
        Code.UNIMPLEMENTED,
        f"Conversion of JSON Value: {json_text(value)} to type: {type_name(dtype)}",
    )


def _dense_shape(value):
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value, level, shape, dtype, flat):
    """Checks `value` against `shape` and appends its leaves (FillTensorProto)."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise invalid_argument(
                f"JSON Value: {json_text(value)} found at incorrect level: "
                f"{level + 1} in the JSON DOM. Expected at level: {rank}"
            )
        flat.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid_argument(
            f"Encountered list at unexpected level: {level} expected < {rank}"
        )
    if len(value) != shape[level]:
        raise invalid_argument(
            f"Encountered list at unexpected size: {len(value)} at level: {level} "
            f"expected size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, flat)


def _to_array(flat, shape, dtype):
    if dtype == tf.string:
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    return np.array(flat, dtype=dtype.as_numpy_dtype).reshape(shape)


def tensor(value, dtype):
    """One JSON value as an array of `dtype`, checked element by element."""
    shape = _dense_shape(value)
    if len(shape) > MAX_RANK:
        raise invalid_argument(
            f"JSON value is nested too deeply: {len(shape)} levels of lists, at most "
            f"{MAX_RANK} are supported."
        )
    flat = []
    _fill(value, 0, shape, dtype, flat)
    return _to_array(flat, shape, dtype)


def fast_array(values, dtype, literals):
    """`values` as an array of `dtype` with numpy, or None when unsure.

    None sends the request down the element-by-element path, which either
    converts it the same way or raises TF Serving's error for it. `literals`
    says whether the body holds `true`/`false`, which numpy would silently
    turn into numbers.
    """
    if dtype == tf.string:
        if all(type(v) is str for v in values):
            array = np.empty(len(values), dtype=object)
            array[:] = [value.encode("utf-8") for value in values]
            return array
        return None
    if literals and dtype != tf.bool:
        return None
    if len(values) <= SMALL and values:
        array = _small_array(values, dtype)
        if array is not None:
            return array
    try:
        array = np.array(values)
    except (ValueError, TypeError, OverflowError):
        return None
    return checked_array(array, dtype)


def _small_array(values, dtype):
    """What `np.array(values)` and `checked_array` make of a short flat list
    of plain numbers, checked in Python; None leaves it to them."""
    kind = type(values[0])
    if kind is float:
        limit = _FLOAT_MAX.get(dtype)
        if limit is None:
            return None
        for value in values:
            if type(value) is not float or (
                abs(value) > limit and math.isfinite(value)
            ):
                return None
    elif kind is int:
        exact = _MAX_EXACT_INT.get(dtype)
        if exact is not None:
            low, high = -exact, exact
        elif dtype in _INT_RANGES:
            low, high = _INT_RANGES[dtype]
            high = min(high, _INT64_MAX)  # np.array makes larger ones uint64
        else:
            return None
        for value in values:
            if type(value) is not int or not low <= value <= high:
                return None
    else:
        return None
    return np.array(values, dtype=dtype.as_numpy_dtype)


def checked_array(array, dtype):
    """`array` (what `np.array` made of JSON numbers) as `dtype`, or None
    when a value needs the element-by-element path: the wrong kind of
    number, out of range, or an integer a float type does not hold exactly."""
    kind = array.dtype.kind
    if array.ndim > MAX_RANK + 1:
        return None
    if dtype in _MAX_EXACT_INT:
        if kind == "i":
            if array.size and np.abs(array).max() > _MAX_EXACT_INT[dtype]:
                return None
        elif kind == "f":
            limit = _FLOAT_MAX[dtype]
            # (NaN fails the first comparison: then only finite values count)
            if array.size and not np.abs(array).max() <= limit:
                finite = array[np.isfinite(array)]
                if finite.size and np.abs(finite).max() > limit:
                    return None
        else:
            return None
    elif dtype == tf.bool:
        if kind != "b":
            return None
    elif dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if kind != "i" or (array.size and (array.min() < low or array.max() > high)):
            return None
    else:
        return None
    return array.astype(dtype.as_numpy_dtype, copy=False)


def _float_tokens(array):
    """Float values written as TF Serving's WriteDecimal writes them."""
    flat = array.ravel()
    values = flat.tolist()
    precise = "%.9g" if array.dtype == np.float32 else "%.17g"
    if len(values) <= SMALL:
        single = array.dtype == np.float32
        return [_float_token(value, single, precise) for value in values]
    tokens = _formatted("%g", values)
    parsed = np.array(tokens, dtype=np.float64).astype(flat.dtype, copy=False)
    finite = np.isfinite(flat)
    redo = (parsed != flat) & finite
    misses = int(np.count_nonzero(redo))
    if misses > len(values) // 4:  # (most probabilities need all their digits)
        exact = _formatted(precise, values)
        pairs = zip(tokens, exact, redo.tolist(), strict=True)
        tokens = [e if r else t for t, e, r in pairs]
    elif misses:
        for index in np.flatnonzero(redo).tolist():
            tokens[index] = precise % values[index]
    if not finite.all():
        for index in np.flatnonzero(~finite).tolist():
            tokens[index] = _exact_token(values[index], precise)
    # A token that reads back as a value that is not an integer has a "." or
    # an exponent already: only whole values may need ".0".
    for index in np.flatnonzero(finite & (flat == np.trunc(flat))).tolist():
        token = tokens[index]
        if "." not in token and "e" not in token:
            tokens[index] = token + ".0"
    return tokens


def _formatted(spec, values):
    """`spec % value` for each of `values` (floats), in one formatting call."""
    return ("\n".join([spec] * len(values)) % tuple(values)).split("\n")


def _exact_token(value, precise):
    """A value whose six digits do not round-trip, or that is not finite."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return precise % value


def _float_token(value, single, precise):
    """`_float_tokens` for one value, in Python (float32 values as `single`)."""
    if not math.isfinite(value):
        return _exact_token(value, precise)
    token = f"{value:g}"
    parsed = float(token)
    if single:
        try:
            parsed = _FLOAT32.unpack(_FLOAT32.pack(parsed))[0]
        except OverflowError:  # six digits round past the largest float32
            parsed = math.inf
    if parsed != value:
        token = precise % value
    if "." not in token and "e" not in token and token[-1].isdigit():
        token += ".0"
    return token


def json_tokens(array, as_bytes):
    kind = array.dtype.kind
    if kind == "f":
        return _float_tokens(
            array.astype(np.float32, copy=False) if array.dtype == np.float16 else array
        )
    if kind in "iu":
        return [str(v) for v in array.ravel().tolist()]
    if kind == "b":
        return ["true" if v else "false" for v in array.ravel().tolist()]
    if kind in "OSU":
        tokens = []
        for value in array.ravel().tolist():
            if isinstance(value, str):
                value = value.encode("utf-8")
            if as_bytes:
                tokens.append(f'{{"b64": "{base64.b64encode(value).decode()}"}}')
            else:
                tokens.append(json.dumps(value.decode("utf-8", "replace")))
        return tokens
    raise invalid_argument(
        f"Failed to write JSON value for tensor type: {array.dtype.name}"
    )


def nest(tokens, shape, start=0):
    """The JSON text of `tokens` (flat, row-major) nested as `shape`."""
    if not shape:
        return tokens[start]
    if len(shape) == 1:
        return "[" + ", ".join(tokens[start : start + shape[0]]) + "]"
    step = int(np.prod(shape[1:]))
    return (
        "["
        + ", ".join(nest(tokens, shape[1:], start + i * step) for i in range(shape[0]))
        + "]"
    )
