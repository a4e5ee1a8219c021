"""Classify and regress signatures for TF Serving's Classify, Regress and
MultiInference APIs (`export.classify_signatures = true`).

Those APIs take serialized `tf.Example` protos, not named tensors, and each
signature answers one head. With the option on, the SavedModel gains, beside
`serving_default`, one signature per task:

- `classify_<task>` for a binary or multiclass task: input `inputs` (a
  `[batch]` string tensor of serialized Examples), outputs `classes`
  (`[batch, classes]` strings: the class names, or "0", "1", ...) and
  `scores` (`[batch, classes]` float probabilities; a binary head's one
  probability p becomes `[1 - p, p]`), method name
  `tensorflow/serving/classify`;
- `regress_<task>` for a regression task: input `inputs`, output `outputs`
  (`[batch]` floats, in the target's units), method name
  `tensorflow/serving/regress`.

Each parses the Examples with `tf.io.parse_example`: every model input is a
`FixedLenFeature` of the input's shape (an image of 32x32x3 is 3,072 values
in `float_list`), float inputs read from `float_list`, integer ones from
`int64_list` and strings from `bytes_list`, so a missing or mistyped feature
is refused with TensorFlow's parse error. TF2 saves every signature with the
predict method name; the export then sets these two in `saved_model.pb`
and writes the fingerprint again, so `tensorflow_model_server` and
`keras-mtl serve` answer Classify and Regress on them.

Example:

```python
examples = serialized_examples({"age": [[39.0]], "workclass": [["Private"]]})
loaded = tf.saved_model.load("saved_models/adult/3")
loaded.signatures["classify_income"](inputs=tf.constant(examples))
```
"""

from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mtl.compat.tf_saved_model import rewrite_fingerprint
from keras_mtl.saved_model import (
    CLASSES,
    CLASSIFY_METHOD,
    REGRESS_METHOD,
    SCORES,
    SERVE_TAG,
)
from keras_mtl.saved_model import CLASSIFY_INPUTS as INPUTS
from keras_mtl.saved_model import REGRESS_OUTPUTS as OUTPUTS

CLASSIFY_PREFIX, REGRESS_PREFIX = "classify_", "regress_"


def signature_names(tasks):
    """Signature name -> method name, for `tasks` (dicts with `name`, `kind`)."""
    return {
        (REGRESS_PREFIX if task["kind"] == "regression" else CLASSIFY_PREFIX)
        + task["name"]: (
            REGRESS_METHOD if task["kind"] == "regression" else CLASSIFY_METHOD
        )
        for task in tasks
    }


def _parse_dtype(dtype):
    """The `tf.Example` list a model input of `dtype` is read from."""
    dtype = tf.as_dtype(dtype)
    if dtype == tf.string:
        return tf.string
    if dtype.is_integer or dtype == tf.bool:
        return tf.int64
    return tf.float32


def feature_spec(model):
    """Input name -> `tf.io.FixedLenFeature` of `model`'s inputs."""
    spec = {}
    for tensor in model.inputs:
        shape = tuple(tensor.shape[1:])
        if None in shape:
            raise ValueError(
                "export.classify_signatures needs every input's shape fixed "
                f"(a FixedLenFeature); input {tensor.name!r} has shape {shape}. "
                "Set export.classify_signatures = false for this model."
            )
        spec[tensor.name] = tf.io.FixedLenFeature(shape, _parse_dtype(tensor.dtype))
    return spec


def _classes(task, units):
    names = task.get("class_names")
    if names is None or len(names) != units:
        names = [str(index) for index in range(units)]
    return [str(name) for name in names]


def add_classify_endpoints(archive, model, tasks):
    """Adds a classify or regress endpoint per task of `tasks` to `archive`
    (a `keras.export.ExportArchive` that tracks `model`)."""
    spec = feature_spec(model)
    dtypes = {tensor.name: tf.as_dtype(tensor.dtype) for tensor in model.inputs}
    signature = [tf.TensorSpec((None,), tf.string, name=INPUTS)]

    def run(serialized, name):
        parsed = tf.io.parse_example(serialized, spec)
        features = {key: tf.cast(value, dtypes[key]) for key, value in parsed.items()}
        return tf.cast(model(features, training=False)[name], tf.float32)

    def regress(name):
        def endpoint(serialized):
            return {OUTPUTS: tf.reshape(run(serialized, name), (-1,))}

        return endpoint

    def classify(name, binary, classes):
        def endpoint(serialized):
            scores = run(serialized, name)
            if binary:
                scores = tf.concat([1.0 - scores, scores], axis=-1)
            batch = tf.shape(scores)[0]
            return {
                CLASSES: tf.tile(tf.constant(classes)[tf.newaxis], [batch, 1]),
                SCORES: scores,
            }

        return endpoint

    # (each endpoint closes over its task's values: defaults would become
    # signature inputs)
    for task in tasks:
        name, kind = task["name"], task["kind"]
        if kind == "regression":
            archive.add_endpoint(REGRESS_PREFIX + name, regress(name), signature)
            continue
        binary = kind == "binary"
        units = 2 if binary else int(model.output[name].shape[-1])
        archive.add_endpoint(
            CLASSIFY_PREFIX + name,
            classify(name, binary, _classes(task, units)),
            signature,
        )


def set_method_names(export_dir, methods):
    """Sets the method name of each signature of `methods` (name -> method)
    in `export_dir/saved_model.pb`, then writes the fingerprint again."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(export_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG not in meta_graph.meta_info_def.tags:
            continue
        for name, method in methods.items():
            if name not in meta_graph.signature_def:
                raise RuntimeError(f"The export has no signature {name!r} to mark.")
            meta_graph.signature_def[name].method_name = method
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(saved_model.SerializeToString(deterministic=True))
    temporary.replace(path)
    rewrite_fingerprint(export_dir)


def _feature(values):
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind in "OSU":
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(
                value=[v if isinstance(v, bytes) else str(v).encode() for v in values]
            )
        )
    if values.dtype.kind in "iub":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values.tolist()))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values.tolist()))


def examples(inputs):
    """Input name -> batch of values (arrays or tensors) -> one
    `tf.train.Example` per row, each input flattened into its feature."""
    columns = {name: np.asarray(value) for name, value in inputs.items()}
    sizes = {len(column) for column in columns.values()}
    if len(sizes) != 1:
        raise ValueError(
            f"The inputs have different batch sizes: "
            f"{ {name: len(c) for name, c in columns.items()} }."
        )
    return [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    name: _feature(column[row]) for name, column in columns.items()
                }
            )
        )
        for row in range(sizes.pop())
    ]


def serialized_examples(inputs):
    """`examples(inputs)`, serialized: an object array for the `inputs`
    tensor of a classify or regress signature."""
    return np.array([e.SerializeToString() for e in examples(inputs)], dtype=object)


def verify(loaded, model, inputs, tasks, atol):
    """Checks each classify / regress signature of `loaded` (the reloaded
    SavedModel) against `model` on `inputs` sent as Examples."""
    expected = model(inputs, training=False)
    serialized = tf.constant(serialized_examples(inputs))
    for task in tasks:
        name = task["name"]
        value = np.asarray(expected[name], dtype=np.float32)
        if task["kind"] == "regression":
            got = loaded.signatures[REGRESS_PREFIX + name](inputs=serialized)[OUTPUTS]
            value = value.reshape(-1)
        else:
            got = loaded.signatures[CLASSIFY_PREFIX + name](inputs=serialized)[SCORES]
            if task["kind"] == "binary":
                value = np.concatenate([1.0 - value, value], axis=-1)
        difference = np.max(np.abs(np.asarray(got) - value))
        if not difference <= atol:
            raise RuntimeError(
                f"The {name!r} signature of the reloaded SavedModel differs from "
                f"the model's output by {difference:.3g} (> {atol}) on Examples."
            )
