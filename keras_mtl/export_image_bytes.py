"""An export whose `serving_default` takes encoded images (`export.image_input`).

With `export.image_input = "bytes"` the SavedModel's `serving_default`
signature takes one DT_STRING input, `image_bytes`, of shape `[-1]`: a batch
of encoded JPEG or PNG files. The graph decodes each to 3 channels and resizes
it to the model's input size with `keras_mtl.data.image_files.decode_image`,
the function the `images` source trains on, and returns the task outputs. TF
Serving clients send `{"b64": "..."}` in REST requests and a DT_STRING
`TensorProto` over gRPC. The float-pixel signature stays under the name
`serve` (Keras' name for it in every export).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_mtl.data.image_files import decode_image
from keras_mtl.saved_model import FLOAT_SIGNATURE, IMAGE_BYTES_INPUT


def find_image_input(model):
    """`(name, (height, width, channels))` of `model`'s one image input.

    Raises:
        ValueError: The model's inputs are not one image of 3 channels.
    """
    shapes = {tensor.name: tuple(tensor.shape[1:]) for tensor in model.inputs}
    if len(shapes) != 1 or len(next(iter(shapes.values()))) != 3:
        raise ValueError(
            "export.image_input='bytes' needs a model with one image input of "
            f"shape (height, width, 3). Received inputs: {shapes}. Use "
            "export.image_input='float' for this model."
        )
    ((name, shape),) = shapes.items()
    if shape[-1] != 3 or None in shape:
        raise ValueError(
            "export.image_input='bytes' decodes images to a fixed (height, width, "
            f"3). Received: input {name!r} of shape {shape}."
        )
    return name, shape


def decode_batch(image_bytes, shape):
    """A `[batch]` string tensor of encoded images -> float32 pixels."""
    size = tuple(shape[:2])
    return tf.map_fn(
        lambda contents: decode_image(contents, size),
        image_bytes,
        fn_output_signature=tf.TensorSpec(shape, tf.float32),
    )


def encode_png(pixels):
    """Float pixels in [0, 255] (`[batch, h, w, 3]`) -> an object array of PNG
    bytes, rounded to 8 bits; for warm-up records and checks."""
    pixels = np.clip(np.rint(np.asarray(pixels)), 0, 255).astype(np.uint8)
    return np.array([tf.io.encode_png(image).numpy() for image in pixels], object)


def add_serve_endpoint(archive, model):
    """Adds `serve` to `archive` (a `keras.export.ExportArchive` that tracks
    `model`): the model on its own inputs, as `model.export` writes it."""
    archive.add_endpoint(
        FLOAT_SIGNATURE,
        lambda inputs: model(inputs, training=False),
        input_signature=[
            {
                tensor.name: tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name)
                for tensor in model.inputs
            }
        ],
    )


def write_image_bytes_export(model, path, add_endpoints=None):
    """Writes `model` to `path` with a bytes `serving_default` and the float
    `serve` signature (see the module docstring), and the endpoints
    `add_endpoints(archive)` adds, if given."""
    name, shape = find_image_input(model)

    def from_bytes(image_bytes):
        return model({name: decode_batch(image_bytes, shape)}, training=False)

    archive = keras.export.ExportArchive()
    archive.track(model)
    add_serve_endpoint(archive, model)
    archive.add_endpoint(
        "serving_default",
        from_bytes,
        input_signature=[tf.TensorSpec((None,), tf.string, name=IMAGE_BYTES_INPUT)],
    )
    if add_endpoints is not None:
        add_endpoints(archive)
    archive.write_out(str(path), verbose=False)
