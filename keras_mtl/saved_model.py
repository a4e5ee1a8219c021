"""Reading exported SavedModels: versions, metadata and the serving signature.

Used by evaluation, `keras-mtl predict` and the server; none of them needs the
Keras model or keras-mtl's custom layers, only `tf.saved_model.load`.
"""

import json
import logging
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_mtl.compat.tf_function import SINGLE_THREADED_EXECUTOR
from keras_mtl.compat.tf_function import direct_call as _direct_call
from keras_mtl.compat.tf_function import tensor_maker as _tensor_maker

METADATA_FILE = "keras_mtl.json"
# TF Serving's warm-up requests: a TFRecord of PredictionLog protos.
WARMUP_FILE = "tf_serving_warmup_requests"
SIGNATURE = "serving_default"
# `export.image_input = "bytes"`: serving_default's one input, and the
# signature that keeps taking the model's own (float) inputs.
IMAGE_BYTES_INPUT = "image_bytes"
FLOAT_SIGNATURE = "serve"
SERVE_TAG = "serve"
# SignatureDef method names, as TF Serving checks them.
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# The tensor names of TF Serving's classify and regress signatures.
CLASSIFY_INPUTS = "inputs"  # (REGRESS_INPUTS too)
CLASSES, SCORES, REGRESS_OUTPUTS = "classes", "scores", "outputs"


class _QuietSanitizing(logging.Filter):
    """Drops TF's warning that `hours-per-week` becomes `hours_per_week` in
    Python; the SignatureDef and the call keep the original name."""

    def filter(self, record):
        return "is not a valid tf.function parameter name" not in record.getMessage()


logging.getLogger("absl").addFilter(_QuietSanitizing())
logger = logging.getLogger("keras_mtl.serving")


def metadata_path(version_dir):
    return Path(version_dir) / "assets.extra" / METADATA_FILE


def read_metadata(version_dir):
    """The metadata keras-mtl wrote beside a SavedModel, or `{}` if none."""
    path = metadata_path(version_dir)
    return json.loads(path.read_text()) if path.exists() else {}


def list_versions(model_dir):
    """The integer version directories of `model_dir`, ascending.

    As TF Serving does, a directory counts when its name is an integer
    (`00000123` is 123) and other names (the exporter's temporary directories)
    are ignored.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(
        int(path.name) for path in model_dir.iterdir() if _is_version_dir(path)
    )


def _is_version_dir(path):
    return path.is_dir() and path.name.isascii() and path.name.isdigit()


def version_dirs(model_dir):
    """Integer version -> its directory, for the integer directories of `model_dir`."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return {}
    return {int(p.name): p for p in model_dir.iterdir() if _is_version_dir(p)}


def read_signature_defs(version_dir, tag=SERVE_TAG):
    """The SignatureDefs of the meta graph tagged `tag`, as TF Serving reads them.

    Their keys are the SignatureDef's own, so input names keep their hyphens
    (`hours-per-week`) where Python's function arguments do not.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if tag in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(
        f"No meta graph tagged {tag!r} in {version_dir}; TF Serving and "
        "keras-mtl serve load the 'serve' meta graph."
    )


def resolve_version_dir(path):
    """`path` if it holds a SavedModel, else its latest integer version."""
    path = Path(path)
    if (path / "saved_model.pb").exists():
        return path
    versions = list_versions(path)
    if not versions:
        raise ValueError(
            f"No SavedModel at {path}: expected saved_model.pb there or integer "
            "version directories such as saved_models/shapes/1."
        )
    return version_dirs(path)[max(versions)]


class LoadedModel:
    """A SavedModel loaded for inference through its `serving_default` signature.

    Args:
        path: A version directory, or a model directory (its latest version).

    Attributes:
        path: The version directory.
        metadata: What `export_saved_model` recorded (config, tasks, metrics).
        input_specs: Input name -> `tf.TensorSpec` of the signature.
        output_names: The signature's output names (the task names).
        signature_defs: Every SignatureDef of the `serve` meta graph, by key.
        signature_inputs: Signature key -> input name -> `tf.TensorSpec`, for
            the signatures that can be called.
    """

    def __init__(self, path):
        self.path = resolve_version_dir(path)
        self._loaded = tf.saved_model.load(str(self.path))
        self.signature = self._loaded.signatures[SIGNATURE]
        # Python sanitises argument names ("hours-per-week" -> "hours_per_week")
        # but the SignatureDef, which TF Serving reads, and the call keep the
        # original names, which the specs carry.
        self.signatures = dict(self._loaded.signatures)
        self.signature_inputs = {
            key: {
                spec.name or name: spec
                for name, spec in function.structured_input_signature[1].items()
            }
            for key, function in self.signatures.items()
        }
        self.input_specs = self.signature_inputs[SIGNATURE]
        self.output_names = sorted(self.signature.structured_outputs)
        self.signature_defs = read_signature_defs(self.path)
        self.metadata = read_metadata(self.path)
        # Signature key -> the direct call `run` uses (False: the public call).
        self._direct_calls = {}
        self._make_tensor = _tensor_maker()

    @property
    def takes_image_bytes(self):
        """Whether `serving_default` takes encoded images (`image_bytes`)."""
        return list(self.input_specs) == [IMAGE_BYTES_INPUT] and (
            FLOAT_SIGNATURE in self.signatures
        )

    @property
    def feature_signature(self):
        """The signature that takes the model's inputs as the data pipeline
        gives them: `serving_default`, or `serve` when `serving_default` takes
        image bytes."""
        return self.signatures[FLOAT_SIGNATURE if self.takes_image_bytes else SIGNATURE]

    def to_tensors(self, inputs):
        """Converts a dict of array-likes to the signature's dtypes, checking names."""
        missing = sorted(set(self.input_specs) - set(inputs))
        unknown = sorted(set(inputs) - set(self.input_specs))
        if missing or unknown:
            raise ValueError(
                f"Expected inputs {sorted(self.input_specs)}; missing {missing}, "
                f"unknown {unknown}."
            )
        tensors = {}
        for name, spec in self.input_specs.items():
            value = np.asarray(inputs[name])
            if spec.dtype == tf.string and not _holds_bytes(value):
                value = value.astype(str)  # numbers in a string column
            try:
                tensors[name] = tf.convert_to_tensor(value, spec.dtype)
            except (TypeError, ValueError) as error:
                raise ValueError(
                    f"Input {name!r}: expected {spec.dtype.name} values, received "
                    f"{value.dtype} ({error})."
                ) from None
            if not spec.shape.is_compatible_with(tensors[name].shape):
                raise ValueError(
                    f"Input {name!r}: expected shape {spec.shape.as_list()} (None = "
                    f"any), received {tensors[name].shape.as_list()}."
                )
        return tensors

    def predict(self, inputs):
        """Runs the signature; returns output name -> numpy array."""
        outputs = self.signature(**self.to_tensors(inputs))
        return {name: value.numpy() for name, value in outputs.items()}

    def run(self, tensors, signature_name=SIGNATURE):
        """Calls a signature with checked tensors, keyed by SignatureDef input name.

        Unlike `predict`, nothing is checked here: the server has done it.
        Arrays become tensors of the signature's dtypes as `tf.constant`
        makes them, without its per-call checks (`compat.tf_function.
        tensor_maker`). The first call of a signature is the public one; it
        then checks a direct call of the signature's function
        (`compat.tf_function.direct_call`), first with TensorFlow's
        single-threaded executor, then with the default one, and keeps the
        first that answers the same, or the public call. The direct call
        skips the public call's Python; the single-threaded executor runs
        the kernels on this thread, where the default one hands them to
        thread pools whose threads have gone to sleep between requests
        (adult model, batch 1, calls 1 ms apart: 0.27 against 0.50 ms;
        `benchmarks/serving_profile.py`). Returns output name -> numpy array.
        """
        specs = self.signature_inputs[signature_name]
        make = self._make_tensor
        tensors = {
            name: make(value, specs[name].dtype) for name, value in tensors.items()
        }
        direct = self._direct_calls.get(signature_name)
        if direct:
            outputs = direct(tensors)
        else:
            function = self.signatures[signature_name]
            outputs = function(**tensors)
            if direct is None:
                direct = _checked_direct_call(function, tensors, outputs)
                self._direct_calls[signature_name] = direct
                logger.info(
                    "%s: signature %r runs %s",
                    self.path,
                    signature_name,
                    f"as one op on TensorFlow's {direct.executor} executor"
                    if direct
                    else "through its public call",
                )
        return {name: value.numpy() for name, value in outputs.items()}

    @property
    def executor(self):
        """Signature key -> how `run` calls it: "single-threaded" or "default"
        (a direct call with that executor) or "public" (the signature's own
        call); only for signatures `run` has called."""
        return {
            key: "public" if not call else call.executor
            for key, call in self._direct_calls.items()
        }


def _holds_bytes(value):
    """Whether an array holds `bytes` (encoded images, say), which `astype(str)`
    would turn into their repr."""
    if value.dtype.kind == "S":
        return True
    return value.dtype == object and any(isinstance(v, bytes) for v in value.flat)


def _checked_direct_call(function, tensors, expected):
    """The first direct call of `function` (single-threaded executor, then
    the default one) that gives `expected` for `tensors`, else False.

    `_direct_call` (`keras_mtl.compat.tf_function`) is TensorFlow's private
    API, and the single-threaded executor cannot run every graph (old-style
    control flow, ops split across devices): where a call is missing, fails
    or answers differently, the next is tried, and `LoadedModel.run` keeps
    the public call when none is left.
    """
    for executor, label in (
        (SINGLE_THREADED_EXECUTOR, "single-threaded"),
        ("", "default"),
    ):
        try:
            call = _direct_call(function, executor)
            outputs = call(tensors)
            same = sorted(outputs) == sorted(expected) and all(
                np.array_equal(outputs[name].numpy(), expected[name].numpy())
                for name in expected
            )
        except Exception:  # any change in the private API, or a graph it cannot run
            continue
        if same:
            call.executor = label
            return call
    return False


def rows_to_columns(rows, input_names):
    """TF Serving's row format to columns: a list of dicts keyed by input name
    (or of plain values for a model with one input) -> name -> list."""
    if not isinstance(rows, list) or not rows:
        raise ValueError("Expected a non-empty list of rows (instances).")
    if all(isinstance(row, dict) for row in rows):
        names = sorted(rows[0])
        for index, row in enumerate(rows):
            if sorted(row) != names:
                raise ValueError(
                    f"Row {index} has keys {sorted(row)} but row 0 has {names}; "
                    "every row needs the same inputs."
                )
        return {name: [row[name] for row in rows] for name in names}
    if len(input_names) != 1:
        raise ValueError(
            f"Rows must be objects keyed by input name for a model with inputs "
            f"{sorted(input_names)}."
        )
    return {input_names[0]: rows}
