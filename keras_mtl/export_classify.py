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

import contextlib
import logging
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


def finish_signatures(export_dir, methods):
    """Makes the signatures of `methods` (name -> method name) in
    `export_dir/saved_model.pb` what TF Serving's Classify, Regress and
    MultiInference expect, then writes the fingerprint again:

    - each gets its method name (TF2 saves every signature as predict);
    - all read one input tensor. TF2 gives each signature a placeholder of
      its own (`classify_<task>_inputs`), and `tensorflow_model_server` runs
      a MultiInference as one session run that feeds one tensor, refusing
      signatures whose inputs differ. The graph's call of each signature is
      rewired to the first one's placeholder and the others are removed.
      `tf.saved_model.load` restores signatures from their functions, not
      from this graph, and is unaffected.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(export_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG not in meta_graph.meta_info_def.tags:
            continue
        signatures = meta_graph.signature_def
        missing = sorted(set(methods) - set(signatures))
        if missing:
            raise RuntimeError(f"The export has no signatures {missing} to mark.")
        for name, method in methods.items():
            signatures[name].method_name = method
        _share_input(meta_graph, [signatures[name].inputs[INPUTS] for name in methods])
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(saved_model.SerializeToString(deterministic=True))
    temporary.replace(path)
    rewrite_fingerprint(export_dir)


def _share_input(meta_graph, infos):
    """Points every TensorInfo of `infos` (placeholders of the meta graph)
    at the first one's tensor, rewiring the graph's readers of the others
    and removing them."""
    shared = infos[0].name
    shared_node = shared.split(":")[0]
    replaced = {}
    for info in infos[1:]:
        node = info.name.split(":")[0]
        replaced[node] = replaced[f"{node}:0"] = shared_node
        info.name = shared
    if not replaced:
        return
    graph = meta_graph.graph_def
    placeholders = {n.name for n in graph.node if n.op == "Placeholder"}
    if not {name for name in replaced if ":" not in name} <= placeholders:
        raise RuntimeError(
            "The classify / regress signatures' inputs are not placeholders of "
            "the saved graph; export.classify_signatures cannot share them."
        )
    for node in graph.node:
        node.input[:] = [replaced.get(name, name) for name in node.input]
    kept = [n for n in graph.node if n.name not in replaced]
    del graph.node[:]
    graph.node.extend(kept)


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


def _expected(model, inputs, tasks):
    """Signature name -> (the output checked, `scores` or `outputs`, and what
    it must be)."""
    outputs = model(inputs, training=False)
    expected = {}
    for task in tasks:
        value = np.asarray(outputs[task["name"]], dtype=np.float32)
        if task["kind"] == "regression":
            expected[REGRESS_PREFIX + task["name"]] = (OUTPUTS, value.reshape(-1))
        elif task["kind"] == "binary":
            both = np.concatenate([1.0 - value, value], axis=-1)
            expected[CLASSIFY_PREFIX + task["name"]] = (SCORES, both)
        else:
            expected[CLASSIFY_PREFIX + task["name"]] = (SCORES, value)
    return expected


def _check(where, name, got, value, atol):
    difference = np.max(np.abs(np.asarray(got) - value))
    if not difference <= atol:
        raise RuntimeError(
            f"The {name!r} signature {where} differs from the model's output by "
            f"{difference:.3g} (> {atol}) on Examples."
        )


@contextlib.contextmanager
def _quiet_tensorflow():
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def verify(loaded, export_dir, model, inputs, tasks, atol):
    """Checks each classify / regress signature against `model` on `inputs`
    sent as Examples: called from `loaded` (the SavedModel reloaded with
    `tf.saved_model.load`), and all at once in one session run of the saved
    graph, feeding one tensor, as `tensorflow_model_server` runs a
    MultiInference."""
    expected = _expected(model, inputs, tasks)
    serialized = serialized_examples(inputs)
    for name, (output, value) in expected.items():
        answer = loaded.signatures[name](inputs=tf.constant(serialized))[output]
        _check("of the reloaded SavedModel", name, answer, value, atol)
    with (
        tf.Graph().as_default() as graph,
        tf.compat.v1.Session(graph=graph) as session,
        _quiet_tensorflow(),  # (the TF1 loader's deprecation warning)
    ):
        meta_graph = tf.compat.v1.saved_model.loader.load(
            session, [SERVE_TAG], str(export_dir)
        )
        signatures = meta_graph.signature_def
        feeds = {signatures[name].inputs[INPUTS].name for name in expected}
        if len(feeds) != 1:
            raise RuntimeError(f"The classify / regress signatures read {feeds}.")
        fetches = {
            name: signatures[name].outputs[output].name
            for name, (output, _) in expected.items()
        }
        answers = session.run(fetches, {feeds.pop(): serialized})
    for name, (_, value) in expected.items():
        _check("in one session run", name, answers[name], value, atol)
