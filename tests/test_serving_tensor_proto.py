"""TensorProto <-> numpy without TensorFlow's per-call cost, equal to it."""

import gc
import threading

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from keras_mtl.serving.gc_pause import paused_gc
from keras_mtl.serving.tensor_proto import fill_tensor_proto, to_ndarray

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.uint8, np.int8, np.int16,
          np.uint16, np.float16, np.bool_, object]  # fmt: skip
SHAPES = [(), (1,), (1, 1), (2, 3), (0, 4), (3, 2, 2)]


def sample(dtype, shape):
    array = (np.arange(int(np.prod(shape))) % 7).reshape(shape)
    if dtype is object:
        return array.astype(str).astype(bytes).astype(object)
    return array.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_both_directions_agree_with_tensorflow(dtype):
    for shape in SHAPES:
        array = sample(dtype, shape)
        written = tensor_pb2.TensorProto()
        fill_tensor_proto(written, array)
        for proto in (tf.make_tensor_proto(array), written):
            expected = tf.make_ndarray(proto)
            decoded = to_ndarray(proto)
            assert decoded.dtype == expected.dtype, (dtype, shape)
            assert decoded.shape == expected.shape, (dtype, shape)
            np.testing.assert_array_equal(decoded, expected)


@pytest.mark.parametrize(
    "dtype, field, values",
    [
        (tf.float32, "float_val", [0.1, -2.5, 1e39, float("nan"), 3.0, 1e-45]),
        (tf.float64, "double_val", [0.1, -2.5, 1e300, float("nan"), 3.0, 5e-324]),
        (tf.int32, "int_val", [0, -1, 2**31 - 1, -(2**31), 7, 300]),
        (tf.int64, "int64_val", [0, -1, 2**63 - 1, -(2**63), 7, 300]),
        # values past a narrow type wrap, as TF Serving's C++ cast wraps them
        # (tf.make_ndarray refuses them)
        (tf.int8, "int_val", [0, -1, 127, -128, 300, -300]),
        (tf.uint8, "int_val", [0, 255, 256, -1, 7, 300]),
        (tf.int16, "int_val", [0, -1, 40000, -40000, 7, 300]),
        (tf.uint16, "int_val", [0, 65535, 65536, -1, 7, 300]),
    ],
)
def test_value_fields_decode_as_tensorflow_does(dtype, field, values):
    """All of a tensor's values in its `*_val` field (as clients that do not
    use make_tensor_proto write them), per dtype."""
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    for size in (2, 3):
        proto.tensor_shape.dim.add().size = size
    getattr(proto, field).extend(values)
    decoded = to_ndarray(proto)
    if dtype.size >= 4:
        expected = tf.make_ndarray(proto)
    else:
        expected = np.array(values, np.int64).astype(dtype.as_numpy_dtype)
        assert expected.tolist() != values  # some wrapped
    assert decoded.dtype == expected.dtype and decoded.shape == (2, 3)
    np.testing.assert_array_equal(decoded, expected.reshape(2, 3))
    np.testing.assert_array_equal(to_ndarray(proto, [2, 3]), decoded)


def test_a_value_repeated_to_fill_the_shape_is_left_to_tensorflow():
    proto = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum)
    for size in (2, 3):
        proto.tensor_shape.dim.add().size = size
    proto.float_val.append(1.5)  # TensorFlow repeats the last value
    np.testing.assert_array_equal(to_ndarray(proto), np.full((2, 3), 1.5, "float32"))
    proto.ClearField("float_val")
    proto.tensor_content = b"\x00" * 8  # too few bytes: TensorFlow's error
    with pytest.raises(Exception):  # noqa: B017 - whatever TensorFlow raises
        to_ndarray(proto)


def test_a_negative_dimension_is_a_parsing_error_before_decoding():
    from keras_mtl.serving.status import Code, ServingError
    from keras_mtl.serving.tensor_size import decoded_size

    proto = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum)
    for size in (2, -1):
        proto.tensor_shape.dim.add().size = size
    proto.float_val.extend([1.0, 2.0])
    with pytest.raises(ServingError) as caught:
        decoded_size("x", proto)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.message == "tensor parsing error: x"
    with pytest.raises(Exception):  # noqa: B017 - left to TensorFlow, which refuses it
        to_ndarray(proto)
    scalar = tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum)
    scalar.float_val.append(2.5)  # no dims: a scalar, 4 bytes
    assert decoded_size("s", scalar) == 4 and to_ndarray(scalar) == 2.5


def test_paused_gc_nests_across_threads_and_restores_the_collector():
    assert gc.isenabled()
    with paused_gc(10):  # small bodies: nothing changes
        assert gc.isenabled()
    entered, leave = threading.Event(), threading.Event()

    def other():
        with paused_gc(1 << 20):
            entered.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    with paused_gc(1 << 20):
        assert not gc.isenabled()
        thread.start()
        entered.wait(10)
    assert not gc.isenabled()  # the other thread still decodes
    leave.set()
    thread.join(10)
    assert gc.isenabled()


def test_grpc_profile_decodes_as_the_servicer():
    """benchmarks/grpc_profile.py times the servicer's decoding steps by
    calling them itself: they must still run and give the request's arrays."""
    import sys

    from tensorflow_serving.apis import predict_pb2

    from conftest import REPO

    sys.path.insert(0, str(REPO / "benchmarks"))
    import grpc_profile

    request = predict_pb2.PredictRequest()
    arrays = {"x": np.array([[1.5, 2.5]], np.float32), "s": np.array([b"a"], object)}
    for name, array in arrays.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    decoded, deadline = grpc_profile._decode(request)
    assert deadline is None and set(decoded) == set(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(decoded[name], array)
