"""What a gRPC request's TensorProtos take once decoded, checked before decoding.

A TensorProto carries its shape apart from its values, and `tf.make_ndarray`
(as TensorFlow's `Tensor::FromProto`) fills a tensor that carries fewer values
than its shape with the last one: a 100-byte request declaring shape
[30000, 32, 32, 3] with one `float_val` decodes to 368 MB. The size a request
decodes to is computed from the shapes and dtypes alone, refused above the
limit with RESOURCE_EXHAUSTED (TensorFlow's code for an allocation that does
not fit), and reserved from the server's bytes in flight before anything is
allocated.
"""

import math

import tensorflow as tf

from keras_mtl.serving.status import Code, ServingError, invalid_argument
from keras_mtl.serving.tensor_proto import tensor_dims

_POINTER_BYTES = 8  # an object array holds one reference per string
_STRING = tf.string.as_datatype_enum
_ITEM_BYTES = {}  # DataType enum -> bytes per element, filled as met


def _shape_text(dims):
    return "[" + ",".join(str(d) for d in dims) + "]"


def decoded_size(alias, tensor, dims=None):
    """Bytes that `tf.make_ndarray(tensor)` allocates; INVALID_ARGUMENT (TF
    Serving's "tensor parsing error") for a shape or dtype that cannot be.
    `dims`: the shape's sizes, when the caller has read them already."""
    if dims is None:
        dims = tensor_dims(tensor)
    size = _ITEM_BYTES.get(tensor.dtype)
    if size is None:
        try:
            dtype = tf.as_dtype(tensor.dtype)
        except TypeError:
            raise invalid_argument(f"tensor parsing error: {alias}") from None
        if dtype == tf.resource or dtype == tf.variant:
            raise invalid_argument(f"tensor parsing error: {alias}")
        size = _ITEM_BYTES[tensor.dtype] = (
            _POINTER_BYTES if dtype == tf.string else dtype.size
        )
    if dims and min(dims) < 0:
        raise invalid_argument(f"tensor parsing error: {alias}")
    elements = math.prod(dims)
    if tensor.dtype == _STRING:
        return elements * size + sum(map(len, tensor.string_val))
    return elements * size


def check_decoded_size(inputs, limit, dims=None):
    """The decoded size of a request's `inputs` (alias -> TensorProto);
    `dims` (alias -> the shape's sizes) when the caller has read them.

    Raises:
        ServingError: RESOURCE_EXHAUSTED when it is over `limit` (None: no
            limit), naming the largest input, its shape and dtype.
    """
    dims = dims or {}
    sizes = {
        alias: decoded_size(alias, tensor, dims.get(alias))
        for alias, tensor in inputs.items()
    }
    total = sum(sizes.values())
    if limit is not None and total > limit:
        alias = max(sizes, key=sizes.get)
        tensor = inputs[alias]
        dims = dims.get(alias) or tensor_dims(tensor)
        raise ServingError(
            Code.RESOURCE_EXHAUSTED,
            f"The input tensors of this request decode to {total} bytes, over the "
            f"limit of {limit} bytes (--max_request_tensor_bytes); input '{alias}' "
            f"has shape {_shape_text(dims)} and type "
            f"{tf.as_dtype(tensor.dtype).name} ({sizes[alias]} bytes) and carries "
            f"{tensor.ByteSize()} bytes.",
        )
    return total
