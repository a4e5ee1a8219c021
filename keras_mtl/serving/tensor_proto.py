"""TensorProtos to numpy arrays and back, without TensorFlow's per-call cost.

`tf.make_ndarray` and `tf.make_tensor_proto` are general (every dtype, every
field a TensorProto may carry) and cost tens of microseconds per tensor,
which on a batch-1 gRPC request of a dozen inputs is more than the model
call. Numeric tensors that carry `tensor_content` (what `make_tensor_proto`
writes, and TF Serving answers) are read with `np.frombuffer` and written
with `tobytes`; anything else goes through TensorFlow's functions, so the
result is the same bytes either way.
"""

import math

import numpy as np
import tensorflow as tf

# DataType enum -> numpy dtype, for the dtypes whose tensor_content is the
# array's bytes in host order (what make_tensor_proto writes for them).
_NUMERIC = {
    tf.float32.as_datatype_enum: np.dtype(np.float32),
    tf.float64.as_datatype_enum: np.dtype(np.float64),
    tf.int32.as_datatype_enum: np.dtype(np.int32),
    tf.int64.as_datatype_enum: np.dtype(np.int64),
    tf.uint8.as_datatype_enum: np.dtype(np.uint8),
    tf.int8.as_datatype_enum: np.dtype(np.int8),
    tf.int16.as_datatype_enum: np.dtype(np.int16),
    tf.uint16.as_datatype_enum: np.dtype(np.uint16),
}
_ENUMS = {dtype: enum for enum, dtype in _NUMERIC.items()}
# The repeated field that carries each dtype's values when tensor_content is
# empty (make_tensor_proto writes one-element arrays there).
_VALUE_FIELDS = {
    tf.float32.as_datatype_enum: "float_val",
    tf.float64.as_datatype_enum: "double_val",
    tf.int32.as_datatype_enum: "int_val",
    tf.int64.as_datatype_enum: "int64_val",
    tf.uint8.as_datatype_enum: "int_val",
    tf.int8.as_datatype_enum: "int_val",
    tf.int16.as_datatype_enum: "int_val",
    tf.uint16.as_datatype_enum: "int_val",
}
_STRING = tf.string.as_datatype_enum


def tensor_dims(tensor):
    """The dimensions of a TensorProto's shape, as a list of sizes."""
    return [dim.size for dim in tensor.tensor_shape.dim]


def to_ndarray(tensor, dims=None):
    """`tf.make_ndarray(tensor)`. Numeric tensors that carry exactly their
    shape's values (a read-only view of `tensor_content`, or all of their
    `*_val` values) and string tensors that carry all of theirs are read
    directly; the rest (values repeated to fill the shape, other dtypes)
    by TensorFlow. `dims`: `tensor_dims(tensor)`, when the caller has it."""
    if tensor.tensor_shape.unknown_rank:
        return tf.make_ndarray(tensor)
    if dims is None:
        dims = tensor_dims(tensor)
    count = math.prod(dims)
    if count < 0 or (dims and min(dims) < 0):
        return tf.make_ndarray(tensor)
    dtype = _NUMERIC.get(tensor.dtype)
    if dtype is not None:
        content = tensor.tensor_content
        if content:
            if len(content) == count * dtype.itemsize:
                return np.frombuffer(content, dtype).reshape(dims)
        else:
            values = getattr(tensor, _VALUE_FIELDS[tensor.dtype])
            if len(values) == count:
                if dtype.kind == "f":  # (np.array walks a repeated field slowly)
                    return np.fromiter(values, dtype, count).reshape(dims)
                # narrow integers past their type wrap, as TF Serving's C++
                # cast wraps them: np.array does that (np.fromiter, and so
                # tf.make_ndarray, refuse them)
                return np.array(values, dtype=dtype).reshape(dims)
    elif tensor.dtype == _STRING:
        values = tensor.string_val
        if len(values) == count:
            array = np.empty(count, dtype=object)
            array[:] = list(values)
            return array.reshape(dims)
    return tf.make_ndarray(tensor)


def fill_tensor_proto(tensor, array):
    """Writes `array` into the empty TensorProto `tensor` (in place, so that a
    response's map entry is filled without a copy), as make_tensor_proto."""
    enum = _ENUMS.get(array.dtype)
    if enum is None:
        tensor.CopyFrom(tf.make_tensor_proto(array))
        return
    tensor.dtype = enum
    for size in array.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = np.ascontiguousarray(array).tobytes()
