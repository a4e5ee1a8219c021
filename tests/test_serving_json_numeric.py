"""Large numeric JSON arrays decoded straight to numpy (`json_numeric`).

Every body is decoded twice, with the numeric fast path and without it: the
requests must be equal (values and dtypes), and a body the usual path refuses
must be refused with the same message. The fast path runs with the compiled
scanner (`_json_numbers`) and with its pysimdjson fallback.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_mtl.serving import json_numeric, json_predict
from keras_mtl.serving.status import ServingError


@pytest.fixture(autouse=True)
def small_limits(monkeypatch):
    # small bodies and stretches take the fast path, so the tests stay tiny
    monkeypatch.setattr(json_numeric, "MIN_BODY_BYTES", 64)
    monkeypatch.setattr(json_predict, "MIN_BODY_BYTES", 64)
    monkeypatch.setattr(json_numeric, "MIN_ARRAY_BYTES", 16)


@pytest.fixture(params=["compiled", "simdjson"])
def backend(request, monkeypatch):
    """The fast path's two ways of finding and reading arrays."""
    if request.param == "compiled":
        assert json_numeric._json_numbers is not None, "the C scanner is not built"
    else:
        monkeypatch.setattr(json_numeric, "_json_numbers", None)
    return request.param


BOTH = pytest.mark.usefixtures("backend")


def infos(**dtypes):
    return lambda signature_name: {
        name: tf.TensorSpec(None, dtype) for name, dtype in dtypes.items()
    }


FOUND = []  # what parse_with_arrays answered


def outcome(body, dtypes, fast):
    original = json_predict.parse_with_arrays

    def recorded(raw):
        FOUND.append(original(raw))
        return FOUND[-1]

    json_predict.parse_with_arrays = recorded if fast else lambda raw: None
    try:
        request = json_predict.predict_request_from_json(body, infos(**dtypes))
    except ServingError as error:
        return ("error", error.code, error.message)
    finally:
        json_predict.parse_with_arrays = original
    return (
        request.format,
        request.signature_name,
        {name: (a.dtype, a.shape, a.tolist()) for name, a in request.inputs.items()},
    )


def same_both_ways(body, **dtypes):
    body = (body.encode() if isinstance(body, str) else body) + b" " * 64
    FOUND.clear()
    fast, usual = outcome(body, dtypes, True), outcome(body, dtypes, False)
    assert len(FOUND) == 1  # the fast path was tried
    assert fast == usual
    return fast, FOUND[0] is not None


IMAGES = np.arange(2 * 3 * 4 * 2).reshape(2, 3, 4, 2) / 4.0


@BOTH
def test_finds_regular_arrays_and_leaves_the_rest():
    body = json.dumps(
        {"instances": [{"x": image.tolist(), "s": "a"} for image in IMAGES]}
    )
    document = json_numeric.parse_with_arrays(body.encode())
    first = document["instances"][0]
    assert isinstance(first["x"], np.ndarray) and first["s"] == "a"
    assert first["x"].dtype == np.float64 and first["x"].shape == (3, 4, 2)
    np.testing.assert_array_equal(first["x"], IMAGES[0])
    ints = json_numeric.parse_with_arrays(
        b'{"inputs": [[1, 2, 3], [4, 5, 6]]}' + b" " * 40
    )
    assert ints["inputs"].dtype == np.int64 and ints["inputs"].shape == (2, 3)
    assert (
        json_numeric.parse_with_arrays(b'{"inputs": [[1, 2], [3]]}' + b" " * 50) is None
    )


@BOTH
@pytest.mark.parametrize(
    "rows",
    [
        IMAGES.tolist(),  # floats
        IMAGES[..., :1].tolist(),  # one channel: innermost lists of one number
        np.arange(8).reshape(2, 4, 1).tolist(),
        np.arange(24).reshape(2, 3, 4).tolist(),  # integers
        [
            np.arange(12).reshape(3, 4).tolist(),
            (np.arange(12) / 2).reshape(3, 4).tolist(),
        ],
    ],
)
@pytest.mark.parametrize("dtype", [tf.float32, tf.float64, tf.int32, tf.int64])
def test_equal_requests_rows_and_columns(rows, dtype):
    rows_body = json.dumps({"instances": [{"x": r, "s": "a"} for r in rows]})
    result, found = same_both_ways(rows_body, x=dtype, s=tf.string)
    assert found and result[0] in ("row", "error")
    same_both_ways(
        json.dumps({"inputs": {"x": rows, "s": ["a"] * len(rows)}}),
        x=dtype,
        s=tf.string,
    )
    same_both_ways(json.dumps({"instances": rows, "signature_name": "k"}), x=dtype)
    same_both_ways(json.dumps({"inputs": rows}, indent=2), x=dtype)


@BOTH
@pytest.mark.parametrize(
    "text",
    [
        "[[1.5, 2.5], [3.5]]",  # ragged
        "[[1.5, 2.5], []]",  # an empty list
        "[[1.5], []]",  # ... where the others hold one number
        "[[], [1.5]]",
        "[[[]], [[1.5]]]",
        "[[1.5] 2, [3.5]]",
        "[[1.5, 2.5]3, [3.5, 4]]",  # a number after a list
        "[[]1.5, [3.5]]",  # ... and in an empty one
        "[[1.5 2.5], [3.5, 4]]",  # no comma
        "[[01, 2.5], [3.5, 4]]",  # not JSON numbers
        "[[1., 2.5], [3.5, 4]]",
        "[[.5, 2.5], [3.5, 4]]",
        "[[+1, 2.5], [3.5, 4]]",
        "[[1e, 2.5], [3.5, 4]]",
        "[[1, 2.5],, [3.5, 4]]",
        "[[1, 2.5], [3.5, 4]] [1]",
        "[[16777217, 2], [3, 4]]",  # not exact in float32
        "[[1, 18446744073709551616], [3, 4]]",  # past 64 bits
        "[[1, 2], [3, 4]], [[5, 6], [7, 8]]",
        "[[1, 9223372036854775808], [3, 4]]",  # past int64, within uint64
        "[[1.5, 100000000000000000000], [3, 4]]",  # a big integer among floats
        "[[1e400, 2.5], [3.5, 4]]",  # past float64
        "[[-0, 2.5], [-0.0, 4]]",  # negative zeros, integer and float
        "[[1E5, 1e-05], [-1e+5, 4E-0]]",  # exponents
        "[[true, 2], [3, 4]]",  # not numbers
        "[[null, 2], [3, 4]]",
    ],
)
def test_bad_or_unusual_arrays_are_answered_as_before(text):
    for body in (
        '{"inputs": ' + text + "}",
        '{"instances": [{"x": ' + text + ', "s": "b"}]}',
        '{"instances": [{"x": [[1.5, 2], [3, 4]], "s": "a"}, {"x": '
        + text
        + ', "s": "b"}]}',
    ):
        for dtype in (tf.float32, tf.int64):
            same_both_ways(body, x=dtype, s=tf.string)


@BOTH
def test_floats_come_out_bit_for_bit_as_json_writes_them():
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [
            rng.normal(size=200) * 10.0 ** rng.integers(-300, 300, 200),
            [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 0.1, -0.0],
        ]
    )
    rows = values.reshape(5, 41).tolist()
    body = json.dumps({"inputs": rows}) + " " * 64
    document = json_numeric.parse_with_arrays(body.encode())
    assert document["inputs"].dtype == np.float64
    assert document["inputs"].tobytes() == values.reshape(5, 41).tobytes()
    same_both_ways(body, x=tf.float64)


@BOTH
def test_arrays_inside_strings_stay_strings():
    text = "[[1, 2, 3, 4], [5, 6, 7, 8]]"
    for body in (
        '{"instances": [{"x": "' + text + '"}]}',
        '{"instances": [{"x": "a ' + text + ' b"}]}',
        '{"instances": [{"x": "a \\"' + text + '\\" b"}]}',
    ):
        result, _ = same_both_ways(body, x=tf.string)
        assert result[0] == "row"
        assert result[2]["x"][2] == [json.loads(body)["instances"][0]["x"].encode()]


def test_without_the_scanner_or_pysimdjson_bodies_take_the_usual_path(monkeypatch):
    body = json.dumps({"inputs": IMAGES.tolist()}) + " " * 64
    assert json_numeric.parse_with_arrays(body.encode()) is not None
    monkeypatch.setattr(json_numeric, "simdjson", None)
    assert json_numeric.parse_with_arrays(body.encode()) is not None  # compiled
    monkeypatch.setattr(json_numeric, "_json_numbers", None)
    assert json_numeric.parse_with_arrays(body.encode()) is None
    request = json_predict.predict_request_from_json(body.encode(), infos(x=tf.float32))
    np.testing.assert_array_equal(request.inputs["x"], IMAGES.astype(np.float32))


def test_parsers_kept_between_requests_are_few_and_only_small_ones(monkeypatch):
    import concurrent.futures

    monkeypatch.setattr(json_numeric, "_json_numbers", None)  # simdjson's parsers
    monkeypatch.setattr(json_numeric, "_kept", [])
    monkeypatch.setattr(json_numeric, "KEEP_PARSER_BELOW_BYTES", 1000)
    small = json.dumps({"inputs": IMAGES.tolist()}) + " " * 64
    large = json.dumps({"inputs": (np.arange(600) / 4).reshape(2, 300, 1).tolist()})
    large += " " * 64
    assert json_numeric.parse_with_arrays(large.encode()) is not None
    assert json_numeric._kept == []  # a parser that read a large body is dropped
    assert json_numeric.parse_with_arrays(small.encode()) is not None
    assert len(json_numeric._kept) == 1
    kept = json_numeric._kept[0]
    # the array outlives the parser's next document
    first = json_numeric.parse_with_arrays(small.encode())["inputs"]
    json_numeric.parse_with_arrays(small.replace("0.25", "9.5").encode())
    np.testing.assert_array_equal(first, IMAGES)
    assert json_numeric._kept == [kept]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(
            pool.map(
                lambda _: json_numeric.parse_with_arrays(small.encode()), range(64)
            )
        )
    for result in results:
        np.testing.assert_array_equal(result["inputs"], IMAGES)
    assert 1 <= len(json_numeric._kept) <= json_numeric.KEPT_PARSERS


def test_shapes_of_small_skeletons_are_remembered(monkeypatch):
    """Equal skeletons (64 images written alike) are checked once; large
    ones are not kept, and a remembered shape never answers for another.
    (The simdjson fallback's: the compiled scanner reads shapes as it goes.)"""
    monkeypatch.setattr(json_numeric, "_json_numbers", None)
    monkeypatch.setattr(json_numeric, "CACHED_SKELETON_BYTES", 64)
    json_numeric._known_shape.cache_clear()
    body = json.dumps({"instances": [{"x": image.tolist()} for image in IMAGES]})
    document = json_numeric.parse_with_arrays(body.encode())
    assert [row["x"].shape for row in document["instances"]] == [(3, 4, 2)] * 2
    info = json_numeric._known_shape.cache_info()
    assert (info.misses, info.hits, info.currsize) == (1, 1, 1)
    # the same brackets with other numbers, in a bytearray as the REST front
    # hands bodies over: the shape comes from memory
    again = body.replace("0.25", "7").encode()
    again = json_numeric.parse_with_arrays(bytearray(again))
    assert json_numeric._known_shape.cache_info().hits == 3
    assert again["instances"][0]["x"][0, 0, 1] == 7
    # another shape is checked, and a ragged array still is not one
    other = json_numeric.parse_with_arrays(b'{"inputs": [[1, 2], [3, 4]]}' + b" " * 40)
    assert other["inputs"].shape == (2, 2)
    ragged = b'{"inputs": [[1, 2], [3], [4, 5, 6]]}' + b" " * 40
    assert json_numeric.parse_with_arrays(ragged) is None
    assert json_numeric._known_shape.cache_info().currsize == 3
    # a skeleton over the limit (3x4x2: 55 bytes) is checked every time
    monkeypatch.setattr(json_numeric, "CACHED_SKELETON_BYTES", 54)
    json_numeric._known_shape.cache_clear()
    json_numeric.parse_with_arrays(body.encode())
    assert json_numeric._known_shape.cache_info().currsize == 0


def test_the_server_log_says_how_arrays_are_read(monkeypatch):
    assert "compiled scanner" in json_numeric.array_reader()
    monkeypatch.setattr(json_numeric, "_json_numbers", None)
    assert "with pysimdjson" in json_numeric.array_reader()
    assert "C compiler" in json_numeric.array_reader()
    monkeypatch.setattr(json_numeric, "simdjson", None)
    assert "as JSON lists" in json_numeric.array_reader()
