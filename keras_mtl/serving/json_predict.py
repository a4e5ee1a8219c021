"""TF Serving's `:predict` (and `:classify` / `:regress`) JSON bodies.

The request-level half of `tensorflow_serving/util/json_tensor.cc`:
`{"instances": ...}` (row format: one item per example, objects keyed by
input name when there are several inputs) or `{"inputs": ...}` (columnar: one
value per input), an optional `"signature_name"`. The answers,
`{"predictions": ...}` to row requests and `{"outputs": ...}` to columnar
ones, are `keras_mtl.serving.json_response` (`tensors_to_json`, also
importable from here). The checks, their order and their messages follow TF
Serving's, so a client that reads its errors reads ours.

Example:

```python
request = predict_request_from_json(body, lambda signature: model.input_specs)
body = tensors_to_json(outputs, request.format)
```
"""

import dataclasses
import json
import re

import numpy as np
import tensorflow as tf

from keras_mtl.serving.json_numeric import MIN_BODY_BYTES, parse_with_arrays
from keras_mtl.serving.json_response import COLUMNAR, ROW, tensors_to_json
from keras_mtl.serving.json_tensor import (
    checked_array,
    decode_b64,
    fast_array,
    format_error,
    is_b64,
    is_lossless,
    json_text,
    json_type,
    tensor,
)
from keras_mtl.serving.status import ServingError, invalid_argument

__all__ = [
    "COLUMNAR",
    "ROW",
    "PredictRequest",
    "classify_regress_request_from_json",
    "parse_json",
    "predict_request_from_json",
    "tensors_to_json",
]

# rapidjson's messages for what Python's json module reports differently.
_PARSE_ERRORS = {
    "Expecting value": "Invalid value.",
    "Extra data": "The document root must not be followed by other values.",
    "Expecting property name enclosed in double quotes": (
        "Missing a name for object member."
    ),
    "Expecting ':' delimiter": "Missing a colon after a name of object member.",
    "Expecting ',' delimiter": "Missing a comma or ']' after an array element.",
    "Unterminated string starting at": "Missing a closing quotation mark in string.",
    "Invalid \\escape": "Invalid escape character in string.",
    "Invalid control character at": "Invalid encoding in string.",
}


try:  # ~7x faster on large bodies; an optional dependency (the serving extra)
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None


def _loads_fast(text):
    """orjson's parse, or None: orjson rejects NaN / Infinity tokens (which TF
    Serving accepts) and reports errors in its own words, so everything it
    refuses goes to the json module, which decides and words the error."""
    if orjson is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


# A \uD800-\uDFFF escape: the json module decodes one that is not half of
# a pair to a lone surrogate, which no UTF-8 string holds; rapidjson (and
# orjson) refuse the document.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(document):
    """Whether a string (or key) of `document` holds a lone surrogate."""
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


@dataclasses.dataclass
class PredictRequest:
    """A decoded `:predict` body: the signature, the tensors and the format."""

    signature_name: str
    inputs: dict
    format: str


def parse_json(body):
    """Parses a request body into a JSON object, with TF Serving's errors."""
    if isinstance(body, memoryview):
        body = body.tobytes()
    if not body or body.isspace():  # (no stripped copy of a large body)
        raise invalid_argument("JSON Parse error: The document is empty")
    document = _loads_fast(body)  # orjson reads bytes and bytearray as they are
    if document is None and isinstance(body, (bytes, bytearray)):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise invalid_argument(
                f"JSON Parse error: Invalid encoding in string. at offset: "
                f"{error.start}"
            ) from None
    try:
        if document is None:
            document = json.loads(body)
            if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(document):
                raise invalid_argument(
                    "JSON Parse error: The surrogate pair in string is invalid."
                )
    except json.JSONDecodeError as error:
        reason = _PARSE_ERRORS.get(error.msg, error.msg)
        raise invalid_argument(
            f"JSON Parse error: {reason} at offset: {error.pos}"
        ) from None
    except RecursionError:
        raise invalid_argument(
            "JSON Parse error: The document is nested too deeply."
        ) from None
    if not isinstance(document, dict):
        raise format_error(document, "Is not object")
    return document


def _signature_name(document):
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise format_error(
            document,
            "not formatted correctly. 'signature_name' key must be a string value.",
        )
    return name


def _instance_item(value, name, infos, shapes):
    if name not in infos:
        raise invalid_argument(f"JSON object: does not have named input: {name}")
    array = tensor(value, infos[name].dtype)
    if name not in shapes:
        shapes[name] = array.shape
    elif int(np.prod(shapes[name])) != array.size:
        raise invalid_argument(
            f"Expecting tensor size: {int(np.prod(shapes[name]))} but got: {array.size}"
        )
    elif shapes[name] != array.shape:
        raise invalid_argument(
            f"Expecting shape {_shape_text(shapes[name])} but got: "
            f"{_shape_text(array.shape)}"
        )
    return array


def _shape_text(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def _element_error(index, error, name=None):
    where = f"{index} key: {name}" if name is not None else f"{index}"
    return invalid_argument(
        f"Failed to process element: {where} of 'instances' list. Error: "
        f"{error.code.name}: {error.message}"
    )


def _rows_slow(instances, infos):
    """The row format element by element (FillTensorMapFromInstancesList)."""
    objects = isinstance(instances[0], dict) and not is_b64(instances[0])
    names = sorted(infos)
    columns, shapes = {}, {}
    for index, item in enumerate(instances):
        if objects:
            if not isinstance(item, dict) or is_b64(item):
                raise invalid_argument(
                    f"Expecting object but got list at item {index} of input list"
                )
            for name, value in item.items():
                try:
                    array = _instance_item(value, name, infos, shapes)
                except ServingError as error:
                    raise _element_error(index, error, name) from None
                columns.setdefault(name, []).append(array)
            if sorted(item) != names:
                raise invalid_argument(
                    f"Failed to process element: {index} of 'instances' list. JSON "
                    f"object: {json_text(item)} must only have keys: " + ",".join(names)
                )
        else:
            if isinstance(item, dict) and not is_b64(item):
                raise invalid_argument(
                    f"Expecting value/list but got object at item {index} of input list"
                )
            try:
                array = _instance_item(item, names[0], infos, shapes)
            except ServingError as error:
                raise _element_error(index, error) from None
            columns.setdefault(names[0], []).append(array)
    return {name: np.stack(arrays) for name, arrays in columns.items()}


def _rows_fast(instances, infos, literals):
    names = sorted(infos)
    if isinstance(instances[0], dict) and not is_b64(instances[0]):
        keys = set(names)
        if not all(type(item) is dict and item.keys() == keys for item in instances):
            return None
        columns = {name: [item[name] for item in instances] for name in names}
    else:
        columns = {names[0]: instances}
    tensors = {}
    for name, values in columns.items():
        array = fast_array(values, infos[name].dtype, literals)
        if array is None:
            return None
        tensors[name] = array
    return tensors


def _rows(instances, infos, literals):
    if not isinstance(instances[0], dict) and len(infos) > 1:
        raise invalid_argument(
            "instances is a plain list, but expecting list of objects as multiple "
            "input tensors required as per tensorinfo_map"
        )
    tensors = _rows_fast(instances, infos, literals)
    return tensors if tensors is not None else _rows_slow(instances, infos)


def _columns(value, infos, literals):
    """The columnar format (FillTensorMapFromInputsMap)."""
    if not isinstance(value, dict) or is_b64(value):
        if len(infos) > 1:
            raise invalid_argument(
                "inputs is a plain value/list, but expecting an object as multiple "
                "input tensors required as per tensorinfo_map"
            )
        value = {next(iter(infos)): value}
    tensors = {}
    for name in sorted(infos):
        if name not in value:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        item, dtype = value[name], infos[name].dtype
        array = None
        if isinstance(item, list) and item:
            array = fast_array(item, dtype, literals)
        tensors[name] = array if array is not None else tensor(item, dtype)
    return tensors


def _column(values, dtype, raw):
    """One input of a document from `parse_with_arrays`, or None."""
    if isinstance(values, np.ndarray):
        return checked_array(values, dtype)
    if not isinstance(values, list) or not values:
        return None
    if not any(isinstance(value, np.ndarray) for value in values):
        return fast_array(values, dtype, b"true" in raw or b"false" in raw)
    if not all(isinstance(value, np.ndarray) for value in values):
        return None
    try:
        array = np.array(values)  # stacks them (ValueError when shapes differ)
    except (ValueError, TypeError):
        return None
    return checked_array(array, dtype)


def _request_with_arrays(document, input_infos, raw):
    """The request of a document whose large numeric arrays are numpy arrays
    already (`json_numeric`), or None: then the caller decodes the body the
    usual way, which gives the same request or raises TF Serving's error."""
    signature_name = document.get("signature_name", "")
    if not isinstance(signature_name, str) or (
        ("instances" in document) == ("inputs" in document)
    ):
        return None
    try:
        infos = input_infos(signature_name)
    except ServingError:
        return None
    if not infos:
        return None
    names = sorted(infos)
    if "instances" in document:
        instances, request_format = document["instances"], ROW
        if isinstance(instances, np.ndarray):
            if len(names) != 1:
                return None
            columns = {names[0]: instances}
        elif not isinstance(instances, list) or not instances:
            return None
        elif all(type(item) is dict and not is_b64(item) for item in instances):
            keys = set(names)
            if not all(item.keys() == keys for item in instances):
                return None
            columns = {name: [item[name] for item in instances] for name in names}
        elif len(names) == 1 and not any(isinstance(i, dict) for i in instances):
            columns = {names[0]: instances}
        else:
            return None
    else:
        value, request_format = document["inputs"], COLUMNAR
        if isinstance(value, dict) and not is_b64(value):
            if not all(name in value for name in names):
                return None
            columns = {name: value[name] for name in names}
        elif len(names) == 1:
            columns = {names[0]: value}
        else:
            return None
    tensors = {}
    for name, values in columns.items():
        array = _column(values, infos[name].dtype, raw)
        if array is None:
            return None
        tensors[name] = array
    return PredictRequest(signature_name, tensors, request_format)


def predict_request_from_json(body, input_infos):
    """Decodes a `:predict` body (FillPredictRequestFromJson).

    Args:
        body: The request body (bytes or str), or an already parsed dict.
        input_infos: `input_infos(signature_name)` returns the signature's
            inputs, name -> an object with a `dtype` (`tf.DType`), such as a
            `tf.TensorSpec`; it raises `ServingError` for an unknown model or
            signature.

    Returns:
        A `PredictRequest`.

    Raises:
        ServingError: INVALID_ARGUMENT with TF Serving's message for a
            malformed body.
    """
    literals = True
    if isinstance(body, dict):
        document = body
    else:
        if isinstance(body, memoryview):
            body = body.tobytes()
        raw = body if isinstance(body, (bytes, bytearray)) else str(body).encode()
        if len(raw) >= MIN_BODY_BYTES and (document := parse_with_arrays(raw)):
            request = _request_with_arrays(document, input_infos, raw)
            if request is not None:
                return request
        literals = b"true" in raw or b"false" in raw
        document = parse_json(body)
    signature_name = _signature_name(document)
    infos = input_infos(signature_name)
    if not infos:
        raise invalid_argument(
            "Failed to get input map for signature: " + (signature_name or "DEFAULT")
        )
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise format_error(
            document,
            "Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist ",
        )
    try:
        if has_instances:
            instances = document["instances"]
            if not isinstance(instances, list):
                raise format_error(
                    document, "Excepting 'instances' to be an list/array"
                )
            if not instances:
                raise format_error(document, "No values in 'instances' array")
            return PredictRequest(
                signature_name, _rows(instances, infos, literals), ROW
            )
        if has_inputs:
            return PredictRequest(
                signature_name, _columns(document["inputs"], infos, literals), COLUMNAR
            )
    except RecursionError:
        raise invalid_argument("JSON value is nested too deeply.") from None
    raise invalid_argument("Missing 'inputs' or 'instances' key")


_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _feature_value(name, value):
    """(list kind, value) of one JSON value of feature `name`, by TF
    Serving's rules (AddValueToFeature): a string or {"b64": ...} is bytes,
    a bool or an integer int64, any other number float."""
    if (
        value is None
        or isinstance(value, list)
        or (isinstance(value, dict) and not is_b64(value))
    ):
        raise invalid_argument(
            f"Feature: {name} has element with unexpected JSON type: {json_type(value)}"
        )
    if isinstance(value, str):
        return "bytes_list", value.encode("utf-8")
    if isinstance(value, dict):
        return "bytes_list", decode_b64(value)
    if type(value) is bool:
        return "int64_list", int(value)
    if type(value) is int and -(2**63) <= value <= _UINT64_MAX:
        if value > _INT64_MAX:
            raise invalid_argument(
                f"Feature: {name} has uint64 element. Only int64 is supported."
            )
        return "int64_list", value
    # a float, or an integer past 64 bits (a double to rapidjson)
    if not is_lossless(value, tf.float32):
        raise invalid_argument(
            f"Cannot convert JSON value: {json_text(value)} to float without "
            "loss of precision."
        )
    return "float_list", float(value)


def _example(value, example):
    """Fills `example` (a `tf.train.Example`) from one JSON object
    (MakeExampleFromJsonObject): a feature's values are all of one kind."""
    if not isinstance(value, dict):
        raise invalid_argument(
            f"Example must be JSON object but got JSON {json_type(value)}"
        )
    for name, content in value.items():
        kind, items = None, []
        for item in content if isinstance(content, list) else [content]:
            item_kind, item = _feature_value(name, item)
            if kind is not None and item_kind != kind:
                raise invalid_argument(
                    f"Unexpected element type in feature: {name} expecting "
                    f"type: {_KIND_NAMES[kind]}"
                )
            kind = item_kind
            items.append(item)
        feature = example.features.feature[name]  # an empty list: no kind
        if kind is not None:
            getattr(feature, kind).value.extend(items)


def example_from_json(value):
    """A `tf.train.Example` from one JSON object of a `:classify` /
    `:regress` body (feature -> value or list of values)."""
    example = tf.train.Example()
    _example(value, example)
    return example


def classify_regress_request_from_json(body, method):
    """A `:classify` / `:regress` body -> (signature name, its Examples, its
    context Example or None), as `tf.train.Example` protos."""
    document = parse_json(body)
    signature_name = _signature_name(document)
    context = None
    if "context" in document:
        context = example_from_json(document["context"])
    if "examples" not in document:
        raise format_error(
            document,
            f"When method is {method}, key 'examples' is expected and was not found",
        )
    examples = document["examples"]
    if not isinstance(examples, list):
        raise format_error(document, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise format_error(document, "'examples' value is an empty array")
    return signature_name, [example_from_json(value) for value in examples], context
