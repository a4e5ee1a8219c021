"""`export_saved_model`: versioned, atomic, verified SavedModels.

The layout is TF Serving's: `<base_dir>/<name>/<version>/` with an integer
version, the next after the largest present. The SavedModel is written into a
temporary directory whose name is not an integer (so TF Serving and
`keras-mtl serve` ignore it), reloaded and compared with the in-memory model,
and only then renamed into place: a crash never leaves a half-written numbered
version behind. The temporary directory's name holds the writer's host and
pid (`.tmp-export-<host>-<pid>-<random>`); the next export removes those of
writers that are gone (killed with SIGKILL, say) and any older than an hour.
"""

import contextlib
import datetime
import functools
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from keras_mtl.config import resolve_path
from keras_mtl.data.features import feature_to_dict
from keras_mtl.export_classify import (
    add_classify_endpoints,
    finish_signatures,
    signature_names,
)
from keras_mtl.export_classify import verify as verify_classify
from keras_mtl.export_image_bytes import (
    add_serve_endpoint,
    encode_png,
    find_image_input,
    write_image_bytes_export,
)
from keras_mtl.export_warmup import warmup_rows, write_warmup_requests
from keras_mtl.models.esmm import serving_model
from keras_mtl.run_directory import check_writable_dir, pid_alive
from keras_mtl.saved_model import (
    IMAGE_BYTES_INPUT,
    SIGNATURE,
    list_versions,
    metadata_path,
)

logger = logging.getLogger(__name__)

TEMPORARY_PREFIX = ".tmp-export-"
# A temporary directory this old is stale whoever wrote it: no export of a
# two-head model takes an hour, and its writer may be on another host.
STALE_AFTER_SECONDS = 3600
_TEMPORARY = re.compile(re.escape(TEMPORARY_PREFIX) + r"(\w*)-(\d+)-")


def _host():
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32]


def _is_stale(temporary):
    match = _TEMPORARY.match(temporary.name)
    if match and match[1] == _host() and not pid_alive(int(match[2])):
        return True
    try:
        age = time.time() - temporary.stat().st_mtime
    except FileNotFoundError:  # Renamed into place meanwhile.
        return False
    return age > STALE_AFTER_SECONDS


def remove_stale_temporaries(model_dir):
    """Removes `.tmp-export-*` directories whose writer is gone or an hour old."""
    for temporary in Path(model_dir).glob(TEMPORARY_PREFIX + "*"):
        if temporary.is_dir() and _is_stale(temporary):
            logger.info("Removing %s, left by an export that did not finish", temporary)
            shutil.rmtree(temporary, ignore_errors=True)


def library_versions():
    """Versions of keras-mtl and the libraries a SavedModel depends on."""
    from importlib import metadata

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    try:
        versions["keras_mtl"] = metadata.version("keras-mtl")
    except metadata.PackageNotFoundError:
        versions["keras_mtl"] = "unknown"
    return versions


def sample_inputs(model, batch_size=2):
    """A small batch that fits `model`'s inputs: zeros, or "" for strings."""
    batch = {}
    for tensor in model.inputs:
        shape = (batch_size, *tensor.shape[1:])
        if tensor.dtype == "string":
            batch[tensor.name] = tf.constant(np.full(shape, "", dtype=object))
        else:
            batch[tensor.name] = tf.zeros(shape, dtype=tensor.dtype)
    return batch


@contextlib.contextmanager
def _without_tensorflow_info_logs():
    """Keeps TensorFlow's INFO lines ("Assets written to: .../.tmp-export-*") out
    of the output: they name the temporary directory, which is renamed away.
    In a notebook TensorFlow logs INFO to stdout (its interactive mode)."""
    logger = tf.get_logger()
    level = logger.level
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _verify(version_dir, model, inputs, atol, signature_inputs=None):
    """Compares `serving_default` on `signature_inputs` (default: `inputs`)
    with the in-memory model on `inputs`; returns the reloaded SavedModel."""
    loaded = tf.saved_model.load(str(version_dir))
    signature = loaded.signatures[SIGNATURE]
    reloaded = signature(**(inputs if signature_inputs is None else signature_inputs))
    expected = model(inputs, training=False)
    if sorted(reloaded) != sorted(expected):
        raise RuntimeError(
            f"The exported signature has outputs {sorted(reloaded)}, the model "
            f"{sorted(expected)}."
        )
    for name, value in expected.items():
        difference = np.max(np.abs(np.asarray(reloaded[name]) - np.asarray(value)))
        if not difference <= atol:
            raise RuntimeError(
                f"Output {name!r} of the reloaded SavedModel differs from the "
                f"model's by {difference:.3g} (> {atol})."
            )
    return loaded


def write_float_export(model, path, add_endpoints):
    """What `model.export(path)` writes (`serve`, and `serving_default` the
    same), with the endpoints `add_endpoints(archive)` adds."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    add_serve_endpoint(archive, model)
    add_endpoints(archive)
    archive.write_out(str(path), verbose=False)


def _rename_into_place(temporary, model_dir):
    for _ in range(100):
        version = max(list_versions(model_dir), default=0) + 1
        target = model_dir / str(version)
        if target.exists():
            continue
        try:
            temporary.rename(target)
        except OSError:  # Another exporter took this number first.
            continue
        return target
    raise RuntimeError(f"Could not find a free version number in {model_dir}.")


def _make_temporary(model_dir, base_dir):
    """A new `.tmp-export-<host>-<pid>-*` directory in `model_dir`."""
    check_writable_dir(model_dir, "export.base_dir", str(base_dir))
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(model_dir)
    prefix = f"{TEMPORARY_PREFIX}{_host()}-{os.getpid()}-"
    return Path(tempfile.mkdtemp(prefix=prefix, dir=model_dir))


def export_saved_model(
    model,
    base_dir,
    name,
    *,
    metadata=None,
    inputs=None,
    atol=1e-5,
    warmup=None,
    image_input="float",
    classify_tasks=None,
):
    """Writes `model` to `base_dir/name/<next version>/` as a SavedModel.

    The `serving_default` signature takes the model's named inputs and returns
    one output per task, named after it, and for an ESMM link the conditional
    probability `<task2>_given_<task1>` too (`keras_mtl.models.serving_model`). `metadata` is written to
    `assets.extra/keras_mtl.json` with the library versions and the time.

    Args:
        model: A Keras model with named inputs and dict outputs.
        base_dir: The directory of all models (`export.base_dir`).
        name: The model's name (`config.name`).
        metadata: A JSON-serialisable dict (config, tasks, class names,
            metrics).
        inputs: A batch to verify the reloaded SavedModel with; zeros of the
            right shapes by default.
        atol: Largest allowed difference between reloaded and in-memory
            outputs.
        warmup: Name -> array of rows written as TF Serving warm-up records
            (`assets.extra/tf_serving_warmup_requests`, one request per
            row; see `keras_mtl.export_warmup`), or None for none. With
            `image_input="bytes"`, float pixels here are written as PNG bytes.
        image_input: "float" (`serving_default` takes the model's inputs) or
            "bytes": it takes encoded JPEG/PNG strings, `image_bytes`, and the
            float signature is `serve` (`keras_mtl.export_image_bytes`).
        classify_tasks: Tasks (dicts with `name`, `kind` and `class_names`,
            as in the metadata) that get a `classify_<task>` or
            `regress_<task>` signature over serialized `tf.Example`s, for TF
            Serving's Classify, Regress and MultiInference APIs
            (`keras_mtl.export_classify`); None for none.

    Returns:
        The `Path` of the new version directory.

    Raises:
        ValueError: `base_dir/name` cannot be a directory that is written.

    Example:

    ```python
    path = export_saved_model(model, "saved_models", "shapes")
    # saved_models/shapes/1
    ```
    """
    model = serving_model(model)
    if image_input not in ("float", "bytes"):
        raise ValueError(
            f"export.image_input must be 'float' or 'bytes'. Received: {image_input!r}"
        )
    inputs = inputs if inputs is not None else sample_inputs(model)
    signature_inputs = None
    model_warmup = warmup  # the model's own inputs, for tf.Example records
    if image_input == "bytes":
        image_name, _ = find_image_input(model)
        # The check compares decoded 8-bit images, which is what bytes carry.
        signature_inputs = {IMAGE_BYTES_INPUT: encode_png(inputs[image_name])}
        inputs = {image_name: np.clip(np.rint(np.asarray(inputs[image_name])), 0, 255)}
        if warmup is not None and image_name in warmup:
            warmup = {IMAGE_BYTES_INPUT: encode_png(warmup[image_name])}
    model_dir = Path(base_dir) / name
    temporary = _make_temporary(model_dir, base_dir)
    try:
        with _without_tensorflow_info_logs():
            add = None
            if classify_tasks:
                add = functools.partial(
                    add_classify_endpoints, model=model, tasks=classify_tasks
                )
            if image_input == "bytes":
                write_image_bytes_export(model, temporary, add)
            elif add is not None:
                write_float_export(model, temporary, add)
            else:
                model.export(str(temporary), format="tf_saved_model", verbose=False)
            if classify_tasks:
                finish_signatures(temporary, signature_names(classify_tasks))
        record = {
            **(metadata or {}),
            "library_versions": library_versions(),
            "exported_at": datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"
            ),
        }
        metadata_path(temporary).parent.mkdir(exist_ok=True)
        metadata_path(temporary).write_text(json.dumps(record, indent=1, default=str))
        write_warmup_requests(
            temporary,
            warmup,
            signature_names(classify_tasks) if classify_tasks else None,
            model_warmup,
        )
        loaded = _verify(temporary, model, inputs, atol, signature_inputs)
        if classify_tasks:
            verify_classify(loaded, temporary, model, inputs, classify_tasks, atol)
        version_dir = _rename_into_place(temporary, model_dir)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    logger.info("Exported %s", version_dir)
    return version_dir


def export_run(model, config, datasets, metrics=None):
    """Exports a trained model of `config` to `<export.base_dir>/<name>/<next>/`.

    The metadata records the config (so the SavedModel can be evaluated
    later), each task's kind and class names, the input specs and `metrics`;
    the reloaded model is verified on a batch of the test split, whose first
    `export.warmup_examples` rows become TF Serving warm-up records.

    Args:
        model: The trained model.
        config: Its `Config`.
        datasets: Its `Datasets`.
        metrics: Test metrics to record, e.g. from `keras_mtl.evaluate`.

    Returns:
        The `Path` of the new version directory.
    """
    inputs, _ = next(iter(datasets.test))
    metadata = {
        "name": config.name,
        "tasks": [
            {
                "name": task.name,
                "kind": task.kind,
                "head": index + 1,
                "class_names": datasets.class_names.get(task.name),
            }
            for index, task in enumerate(config.tasks)
        ],
        "features": [feature_to_dict(feature) for feature in datasets.features],
        "test_metrics": metrics,
        "config": config.to_dict(),
    }
    return export_saved_model(
        model,
        resolve_path(config.export.base_dir),
        config.name,
        metadata=metadata,
        inputs=inputs,
        warmup=warmup_rows(inputs, config.export.warmup_examples),
        image_input=config.export.image_input,
        classify_tasks=metadata["tasks"] if config.export.classify_signatures else None,
    )
