"""TF Serving's JSON codec: the cases of tensorflow_serving/util/json_tensor_test.cc."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_mtl.serving.json_predict import (
    COLUMNAR,
    ROW,
    classify_regress_request_from_json,
    parse_json,
    predict_request_from_json,
    tensors_to_json,
)
from keras_mtl.serving.status import Code, ServingError


def infos(**dtypes):
    return lambda signature_name: {
        name: tf.TensorSpec(None, dtype) for name, dtype in dtypes.items()
    }


def decode(body, **dtypes):
    return predict_request_from_json(body, infos(**dtypes))


def error_of(body, **dtypes):
    with pytest.raises(ServingError) as caught:
        decode(body, **dtypes)
    return caught.value


def test_single_unnamed_tensor_rows():
    request = decode('{"instances": [[1,2],[3,4],[5,6]]}', default=tf.int32)
    assert request.format == ROW and request.signature_name == ""
    array = request.inputs["default"]
    assert array.dtype == np.int32 and array.tolist() == [[1, 2], [3, 4], [5, 6]]


@pytest.mark.parametrize("dtype", [tf.float32, tf.float64])
def test_mixed_ints_and_decimals_for_floats(dtype):
    request = decode('{"instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}', x=dtype)
    array = request.inputs["x"]
    assert array.dtype == dtype.as_numpy_dtype
    np.testing.assert_array_equal(
        array, np.array([1, 2, 3, 4, 5.003, 0.007, 0], dtype.as_numpy_dtype)
    )


def test_signature_name_and_base64_strings():
    request = decode(
        '{"signature_name": "predict_images", '
        '"instances": [{"b64": "aGVsbG8="}, {"b64": "d29ybGQ="}]}',
        default=tf.string,
    )
    assert request.signature_name == "predict_images"
    assert request.inputs["default"].tolist() == [b"hello", b"world"]
    nested = decode(
        '{"instances": [[{"b64": "aGVsbG8="}], [{"b64": "d29ybGQ="}]]}',
        default=tf.string,
    )
    assert nested.inputs["default"].shape == (2, 1)


def test_multiple_named_tensors_with_nan_and_infinity():
    request = decode(
        """{"instances": [
            {"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["foo", "bar"],
             "float_tensor": [1.0, NaN], "dbl_tensor": [NaN]},
            {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["baz", "bat"],
             "float_tensor": [2.0, Infinity], "dbl_tensor": [2.0]}]}""",
        int_tensor=tf.int32,
        str_tensor=tf.string,
        float_tensor=tf.float32,
        dbl_tensor=tf.float64,
    )
    inputs = request.inputs
    assert inputs["int_tensor"].shape == (2, 3, 2)
    assert inputs["str_tensor"].ravel().tolist() == [b"foo", b"bar", b"baz", b"bat"]
    assert inputs["float_tensor"].dtype == np.float32
    assert (
        np.isnan(inputs["float_tensor"][0, 1])
        and inputs["float_tensor"][1, 1] == np.inf
    )
    assert inputs["dbl_tensor"].shape == (2, 1) and np.isnan(inputs["dbl_tensor"][0, 0])


def test_columnar_format():
    request = decode(
        '{"inputs": {"int_tensor": [[[1,2],[3,4],[5,6]]], "str_tensor": ["foo", "bar"],'
        ' "bin_tensor": {"b64": "aGVsbG8="}}}',
        int_tensor=tf.int32,
        str_tensor=tf.string,
        bin_tensor=tf.string,
    )
    assert request.format == COLUMNAR
    assert request.inputs["int_tensor"].shape == (1, 3, 2)
    assert (
        request.inputs["bin_tensor"].shape == ()
        and request.inputs["bin_tensor"].item() == b"hello"
    )
    plain = decode('{"inputs": [[[1,2],[3,4],[5,6]]]}', int_tensor=tf.int32)
    assert plain.inputs["int_tensor"].shape == (1, 3, 2)


@pytest.mark.parametrize(
    "body, dtype, fragment",
    [
        ("", tf.int32, "JSON Parse error: The document is empty"),
        ("  \n", tf.int32, "JSON Parse error: The document is empty"),
        ("instances = [1, 2]", tf.int32, "JSON Parse error: Invalid value"),
        ("[1, 2]", tf.int32, "Is not object"),
        (
            '{"signature_name": 5, "instances": [[1,2],[3,4],[5,6,7]]}',
            tf.int32,
            "'signature_name' key must be a string value.",
        ),
        (
            '{"instances": [[1,2],[3,4],[5,6,7]], "inputs": [[1,2],[3,4],[5,6,7]]}',
            tf.int32,
            "Not formatted correctly expecting only one of 'inputs' or 'instances'",
        ),
        ('{"instances": [[1,2],[3,4],[5,6,7]]}', tf.int32, "Expecting tensor size"),
        ('{"instances": [[1,2],[3,4],[[5,6]]]}', tf.int32, "Expecting shape"),
        ('{"instances": [1, [1]]}', tf.int32, "Expecting shape"),
        ('{"instances": [[1,2],["a", "b"]]}', tf.int32, "not of expected type: int32"),
        ('{"instances": ["x", "y"]}', tf.float32, "not of expected type: float"),
        ('{"instances": [1.5]}', tf.int32, "not of expected type: int32"),
        ('{"instances": [1.0, true]}', tf.float32, "Type: True is not of expected"),
        ('{"instances": [null]}', tf.float32, "Type: Null is not of expected"),
        ('{"instances": [1e308]}', tf.float32, "without loss of precision"),
        ('{"instances": [16777217]}', tf.float32, "without loss of precision"),
        ('{"instances": [9007199254740993]}', tf.float64, "without loss of precision"),
        ('{"instances": [{"b64": "!!"}]}', tf.string, "Unable to base64 decode"),
        ('{"instances": {"a": 1}}', tf.int32, "Excepting 'instances' to be an list"),
        ('{"instances": []}', tf.int32, "No values in 'instances' array"),
        ('{"signature_name": "x"}', tf.int32, "Missing 'inputs' or 'instances' key"),
        ('{"instances": [1]', tf.int32, "JSON Parse error"),
        (b'{"instances": ["\xff"]}', tf.string, "Invalid encoding"),
        ("[" * 100000 + "]" * 100000, tf.int32, "JSON Parse error"),
        ('{"instances": ' + "[" * 5000 + "]" * 5000 + "}", tf.int32, "nested"),
        ('{"instances": ' + "[" * 100 + "1" + "]" * 100 + "}", tf.int32, "nested"),
        ('{"inputs": ' + "[" * 100 + "1" + "]" * 100 + "}", tf.int32, "nested"),
    ],
)
def test_single_tensor_errors(body, dtype, fragment):
    error = error_of(body, default=dtype)
    assert error.code == Code.INVALID_ARGUMENT and error.http_status == 400
    assert fragment in error.message


def test_multiple_named_tensor_errors():
    both = {"int_tensor": tf.int32, "str_tensor": tf.string}
    cases = [
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6]], "str_tensor": ["a"]},'
            ' {"int_tensor": [[[7,8],[9,0],[1,2]]], "str_tensor": ["b"]}]}',
            "Expecting shape",
        ),
        (
            '{"instances": [{"int_tensor": [[1,2],[3,4],[5,6],[7,8]], "str_tensor":'
            ' ["a"]}, {"int_tensor": [[7,8],[9,0],[1,2]], "str_tensor": ["b"]}]}',
            "Expecting tensor size",
        ),
        (
            '{"instances": [{"int_tensor": [1], "str_tensor": ["a"]}, [1, 20, 30]]}',
            "Expecting object but got list",
        ),
        ('{"instances": [1, 2]}', "instances is a plain list, but expecting list"),
        ('{"inputs": [1, 2]}', "inputs is a plain value/list, but expecting an object"),
        ('{"inputs": {"int_tensor": [1]}}', "Missing named input: str_tensor"),
        (
            '{"instances": [{"int_tensor": 1, "str_tensor": "a", "other": 2}]}',
            "does not have named input: other",
        ),
        (
            '{"instances": [{"int_tensor": 1}]}',
            "must only have keys: int_tensor,str_tensor",
        ),
    ]
    for body, fragment in cases:
        assert fragment in error_of(body, **both).message, body
    strings = error_of(
        '{"instances": [["baz", "bar"], {"str_tensor": ["baz", "bat"]}]}',
        str_tensor=tf.string,
    )
    assert "Expecting value/list but got object" in strings.message


def test_fast_and_exact_paths_agree():
    body = json.dumps(
        {"instances": [{"a": [1.5, 2.0], "b": "x"}, {"a": [3, 4e-3], "b": "y"}]}
    )
    fast = decode(body, a=tf.float32, b=tf.string).inputs
    # The same values nested one level deeper in an object force the exact path.
    exact = decode(
        json.dumps(
            {
                "instances": [
                    {"a": [1.5, 2.0], "b": {"b64": "eA=="}},
                    {"a": [3, 4e-3], "b": "y"},
                ]
            }
        ),
        a=tf.float32,
        b=tf.string,
    ).inputs
    np.testing.assert_array_equal(fast["a"], exact["a"])
    assert fast["b"].tolist() == [b"x", b"y"]
    assert exact["b"].tolist() == [b"x", b"y"]


_EDGE_NUMBERS = [
    [0.5],
    [-0.0, 0.0, 1.5],
    [float("nan"), float("inf"), -float("inf")],
    [3.4028234663852886e38, -3.4028234663852886e38],
    [3.5e38],
    [1e-45, 5e-324, 1e300],
    [2**24 - 1, -(2**24 - 1)],
    [2**24],
    [2**53 - 1],
    [2**53],
    [2**31 - 1, -(2**31)],
    [2**31],
    [2**63 - 1, -(2**63)],
    [2**63],
    [2**64],
    [255, 0],
    [1, -3, 7],
    [256],
    [-1],
    [1, 2.5],
    [True],
    ["a"],
    [[1.0, 2.0]],
    [None],
]


@pytest.mark.parametrize(
    "dtype",
    [tf.float32, tf.float64, tf.int8, tf.int32, tf.int64, tf.uint8, tf.uint64],
)
def test_short_lists_are_converted_as_numpy_converts_long_ones(dtype):
    """A list of at most `SMALL` numbers is checked in Python; what it
    accepts, numpy's path must accept as the same array, and what it leaves
    to numpy is decided there."""
    from keras_mtl.serving import json_tensor

    accepted = 0
    for values in _EDGE_NUMBERS:
        assert len(values) <= json_tensor.SMALL
        short = json_tensor._small_array(values, dtype)
        try:
            with np.errstate(all="ignore"):
                long = json_tensor.checked_array(np.array(values), dtype)
        except (ValueError, TypeError, OverflowError):
            long = None
        if short is None:
            continue
        accepted += 1
        assert long is not None, (values, dtype)
        assert short.dtype == long.dtype and short.shape == long.shape
        np.testing.assert_array_equal(short, long)
        assert np.array_equal(np.signbit(short), np.signbit(long)), values
    assert accepted >= 1
    # and through a whole body: one row is a short list, 40 rows a long one
    for values in _EDGE_NUMBERS[:3] + _EDGE_NUMBERS[6:7]:
        body = json.dumps({"instances": values})
        many = json.dumps({"instances": values * 20})
        try:
            one = decode(body, x=dtype).inputs["x"]
        except ServingError as error:
            assert error.message == error_of(many, x=dtype).message
            continue
        np.testing.assert_array_equal(
            np.tile(one, 20), decode(many, x=dtype).inputs["x"]
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("digits", ["most need all", "few need all"])
def test_short_and_long_outputs_are_written_alike(dtype, digits):
    """Outputs of at most `SMALL` values are written in Python, longer ones
    with numpy: the same values must give the same text. Long outputs write
    all digits one value at a time when few values need them, all at once
    when many do: both ways are checked."""
    from keras_mtl.serving import json_tensor

    rng = np.random.default_rng(0)
    values = [
        0.0, -0.0, 0.5, 0.1, 1.0, 9e6, 999999.0, 555557.5, 3e-5, 1e-45,
        np.nan, np.inf, -np.inf, float(np.finfo(dtype).max), 16777217.0, 1e20,
    ]  # fmt: skip
    if digits == "most need all":
        scales = 10.0 ** rng.integers(-8, 9, 200)
        values += (rng.standard_normal(200) * scales).tolist()
    else:  # quarters and whole numbers: six digits write them exactly
        values += (rng.integers(-4000, 4000, 200) / 4).tolist()
    array = np.array(values, dtype)
    long = json_tensor.json_tokens(array, False)
    short = []
    for start in range(0, len(array), json_tensor.SMALL):
        short += json_tensor.json_tokens(
            array[start : start + json_tensor.SMALL], False
        )
    assert len(long) > json_tensor.SMALL
    assert short == long
    finite = np.isfinite(array)
    parsed = np.array(
        [float(t) for t, f in zip(short, finite, strict=True) if f], dtype
    )
    np.testing.assert_array_equal(parsed, array[finite])


def test_rows_to_json():
    tensor = np.array([[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 0], [1, 2]]], np.int32)
    assert json.loads(tensors_to_json({"int_tensor": tensor}, ROW)) == {
        "predictions": tensor.tolist()
    }
    assert json.loads(tensors_to_json({"int_tensor": tensor}, COLUMNAR)) == {
        "outputs": tensor.tolist()
    }
    scalars = np.array([1, 2, 3, 4, 5], np.int32)
    assert json.loads(tensors_to_json({"x": scalars}, ROW)) == {
        "predictions": [1, 2, 3, 4, 5]
    }


def test_floats_are_written_as_tf_serving_writes_them():
    values = np.array([[9000000, 999999, 0.5], [0.0003, 0.00003, 555557.5]], np.float32)
    text = tensors_to_json({"float_tensor": values}, ROW).decode()
    assert text == (
        '{"predictions": [[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]}'
    )
    special = np.array([[np.nan, np.inf], [3, -np.inf]], np.float32)
    text = tensors_to_json({"float_tensor": special}, ROW).decode()
    assert text == '{"predictions": [[NaN, Infinity], [3.0, -Infinity]]}'
    # NaN, not null, and every float32 round-trips exactly.
    random = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    parsed = json.loads(tensors_to_json({"x": random}, COLUMNAR))["outputs"]
    np.testing.assert_array_equal(np.array(parsed, np.float32), random)
    assert (
        "0.1," in tensors_to_json({"x": np.array([0.1, 1], np.float32)}, ROW).decode()
    )


def test_several_outputs_bytes_and_errors():
    outputs = {
        "double_scalar_tensor": np.array([8.0, 9.0]),
        "float_tensor": np.array([[1.0], [2.0]], np.float32),
        "str_tensor": np.array([[b"foo", b"bar"], [b"baz", b"bat"]], object),
        "str_tensor_bytes": np.array(
            [[b"hello", b"world"], [b"tf", b"serving"]], object
        ),
    }
    rows = json.loads(tensors_to_json(outputs, ROW))["predictions"]
    assert rows[1] == {
        "double_scalar_tensor": 9.0,
        "float_tensor": [2.0],
        "str_tensor": ["baz", "bat"],
        "str_tensor_bytes": [{"b64": "dGY="}, {"b64": "c2VydmluZw=="}],
    }
    columns = json.loads(tensors_to_json(outputs, COLUMNAR))["outputs"]
    assert columns["double_scalar_tensor"] == [8.0, 9.0]
    with pytest.raises(ServingError, match="empty tensor map"):
        tensors_to_json({}, ROW)
    with pytest.raises(ServingError, match="inconsistent batch size"):
        tensors_to_json(
            {"a": np.zeros((2, 3), np.int32), "b": np.zeros((1, 3), np.int32)}, ROW
        )
    with pytest.raises(ServingError, match="no shape information"):
        tensors_to_json({"a": np.array(1, np.int32)}, ROW)


def test_parse_json_with_and_without_orjson(monkeypatch):
    from keras_mtl.serving import json_predict

    body = b'{"instances": [1.5, NaN, -Infinity], "x": {"y": [true, null]}}'
    parsed = parse_json(body)
    monkeypatch.setattr(json_predict, "orjson", None)
    assert json.dumps(parse_json(body)) == json.dumps(parsed)
    assert parsed["instances"][2] == float("-inf")
    with pytest.raises(ServingError, match="Invalid value"):
        parse_json(b'{"a": nan}')


def test_classify_and_regress_bodies():
    signature_name, examples, context = classify_regress_request_from_json(
        '{"signature_name": "s", "examples": [{"x": 1.0, "names": ["a", "b"]}]}',
        "classify",
    )
    assert (signature_name, context) == ("s", None)
    (example,) = examples
    assert example.features.feature["x"].float_list.value == [1.0]
    assert example.features.feature["names"].bytes_list.value == [b"a", b"b"]
    for body, fragment in [
        ('{"context": {}}', "key 'examples' is expected and was not found"),
        ('{"examples": {}}', "Expecting 'examples' value to be an list/array"),
        ('{"examples": []}', "'examples' value is an empty array"),
        ('{"examples": [1]}', "Example must be JSON object but got JSON Number"),
        ('{"examples": [{"x": null}]}', "Feature: x has element with unexpected"),
        ('{"examples": [{"x": [[1]]}]}', "Feature: x has element with unexpected"),
        ('{"examples": [{"x": {"a": 1}}]}', "unexpected JSON type: Object"),
        ('{"context": [], "examples": [{}]}', "Example must be JSON object"),
        (
            '{"examples": [{"x": [1.5, 2]}]}',
            "Unexpected element type in feature: x expecting type: float",
        ),
        (
            '{"examples": [{"x": [1, "a"]}]}',
            "Unexpected element type in feature: x expecting type: int64",
        ),
        (
            '{"examples": [{"x": 9223372036854775808}]}',
            "Feature: x has uint64 element. Only int64 is supported.",
        ),
        (
            '{"examples": [{"x": 1e39}]}',
            "Cannot convert JSON value: 1e+39 to float without loss of precision.",
        ),
        ('{"examples": [{"x": {"b64": "!"}}]}', "Unable to base64 decode"),
    ]:
        with pytest.raises(ServingError) as caught:
            classify_regress_request_from_json(body, "classify")
        assert fragment in caught.value.message, (body, caught.value.message)


def test_classify_bodies_become_examples_as_tf_serving_makes_them():
    """Strings and {"b64"} are bytes, bools and integers int64, other numbers
    float; an empty list is a feature without values; a context is kept
    apart from the Examples."""
    _, examples, context = classify_regress_request_from_json(
        json.dumps(
            {
                "context": {"country": "DE"},
                "examples": [
                    {
                        "a": 1,
                        "b": [1.5, 2.0],
                        "c": {"b64": "aGk="},
                        "d": [True, False],
                        "e": [],
                        "f": -(2**63),
                        "g": 2**64,
                    }
                ],
            }
        ),
        "regress",
    )
    assert context.features.feature["country"].bytes_list.value == [b"DE"]
    features = examples[0].features.feature
    assert features["a"].int64_list.value == [1]
    assert features["b"].float_list.value == [1.5, 2.0]
    assert features["c"].bytes_list.value == [b"hi"]
    assert features["d"].int64_list.value == [1, 0]
    assert features["e"].WhichOneof("kind") is None
    assert features["f"].int64_list.value == [-(2**63)]
    # past 64 bits an integer is a double to TF Serving's parser: a float
    assert features["g"].float_list.value == [float(2**64)]


@pytest.mark.parametrize("with_orjson", [True, False])
def test_a_lone_surrogate_escape_is_a_parse_error_not_a_fault(monkeypatch, with_orjson):
    """JSON may spell a UTF-16 surrogate on its own (`"\\ud800"`), which no
    UTF-8 string holds: refused as rapidjson refuses it, wherever it is (a
    NaN token sends the body to the json module, which accepts it)."""
    from keras_mtl.serving import json_predict

    if not with_orjson:
        monkeypatch.setattr(json_predict, "orjson", None)
    for text in (
        '{"instances": ["\\ud800"], "x": NaN}',
        '{"instances": [{"\\udc00": 1}]}',
        '{"signature_name": "a\\uDBFFb", "examples": [{"a": 1}]}',
        '{"examples": [{"a": ["x", "\\ud83d"]}]}',
    ):
        with pytest.raises(ServingError) as caught:
            parse_json(text.encode())
        assert caught.value.code == Code.INVALID_ARGUMENT
        assert "The surrogate pair in string is invalid" in caught.value.message
    # a pair is one character; an escaped backslash before "ud800" is no escape
    document = parse_json(b'{"a": ["\\ud83d\\ude00", "\\\\ud800"], "b": NaN}')
    assert document["a"] == ["\U0001f600", "\\ud800"]
