"""Versioned, atomic, verified SavedModel export."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import keras_mtl
from keras_mtl import export as export_lib
from keras_mtl.export_classify import serialized_examples


@pytest.fixture
def trained(tiny_config):
    model, _, _ = keras_mtl.train(tiny_config, verbose=0)
    datasets = keras_mtl.load_datasets(tiny_config)
    return model, tiny_config, datasets


def test_versions_count_up_and_carry_metadata(trained):
    model, config, datasets = trained
    first = keras_mtl.export_run(
        model, config, datasets, metrics={"fine": {"accuracy": 0.5}}
    )
    second = keras_mtl.export_run(model, config, datasets)
    base = Path(config.export.base_dir) / "shapes"
    assert (first, second) == (base / "1", base / "2")
    assert keras_mtl.list_versions(base) == [1, 2]
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]  # no temporary left
    metadata = keras_mtl.read_metadata(first)
    assert [task["name"] for task in metadata["tasks"]] == ["coarse", "fine"]
    assert metadata["tasks"][1]["class_names"][:2] == ["disk", "ring"]
    assert metadata["test_metrics"] == {"fine": {"accuracy": 0.5}}
    assert metadata["config"] == config.to_dict()
    assert set(metadata["library_versions"]) == {"tensorflow", "keras", "keras_mtl"}


def test_signature_has_named_inputs_and_task_outputs(trained):
    model, config, datasets = trained
    path = keras_mtl.export_run(model, config, datasets)
    loaded = keras_mtl.LoadedModel(path.parent)  # the model directory: latest version
    assert loaded.path == path
    assert list(loaded.input_specs) == ["image"]
    assert loaded.input_specs["image"].shape.as_list() == [None, 32, 32, 3]
    assert loaded.output_names == ["coarse", "fine"]
    inputs, _ = next(iter(datasets.test))
    outputs = loaded.predict({"image": inputs["image"].numpy()})
    expected = model(inputs)
    for name in ("coarse", "fine"):
        np.testing.assert_allclose(outputs[name], expected[name], atol=1e-5)
    shown = subprocess.run(
        [
            Path(sys.executable).parent / "saved_model_cli",
            "show",
            "--dir",
            str(path),
            "--all",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "inputs['image']" in shown and "outputs['coarse']" in shown
    assert "outputs['fine']" in shown and "serving_default" in shown


ROUND_TRIP = """
import sys, numpy as np, tensorflow as tf, keras
path, data = sys.argv[1], np.load(sys.argv[2])
image = tf.constant(data["image"])
loaded = tf.saved_model.load(path)
outputs = loaded.signatures["serving_default"](image=image)
layer = keras.layers.TFSMLayer(path)  # the "serve" endpoint takes the input dict
layer_outputs = layer({"image": image})
for name in ("coarse", "fine"):
    np.testing.assert_allclose(outputs[name].numpy(), data[name], atol=1e-5)
    np.testing.assert_allclose(np.asarray(layer_outputs[name]), data[name], atol=1e-5)
print("round trip ok")
"""


def test_classify_signatures_answer_each_task_with_its_class_names(trained):
    model, config, datasets = trained
    config.export.classify_signatures = True
    path = keras_mtl.export_run(model, config, datasets)
    signatures = keras_mtl.saved_model.read_signature_defs(path)
    assert {name: s.method_name for name, s in signatures.items() if "_" in name} == {
        "classify_coarse": "tensorflow/serving/classify",
        "classify_fine": "tensorflow/serving/classify",
        "serving_default": "tensorflow/serving/predict",
        "__saved_model_init_op": "",
    }
    inputs, _ = next(iter(datasets.test))
    images = inputs["image"].numpy()[:3]
    expected = keras_mtl.LoadedModel(path).predict({"image": images})
    loaded = tf.saved_model.load(str(path))
    serialized = tf.constant(serialized_examples({"image": images}))
    for task in ("coarse", "fine"):
        answer = loaded.signatures[f"classify_{task}"](inputs=serialized)
        np.testing.assert_allclose(answer["scores"], expected[task], atol=1e-5)
        names = [name.encode() for name in datasets.class_names[task]]
        assert answer["classes"].numpy().tolist() == [names] * 3


def test_round_trip_in_a_fresh_process_without_keras_mtl(trained, tmp_path):
    model, config, datasets = trained
    path = keras_mtl.export_run(model, config, datasets)
    inputs, _ = next(iter(datasets.test))
    expected = model(inputs)
    np.savez(
        tmp_path / "expected.npz",
        image=inputs["image"].numpy(),
        **{name: value.numpy() for name, value in expected.items()},
    )
    script = tmp_path / "round_trip.py"
    script.write_text(ROUND_TRIP)
    result = subprocess.run(
        [sys.executable, str(script), str(path), str(tmp_path / "expected.npz")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "round trip ok" in result.stdout


@pytest.mark.parametrize("failing_step", ["_verify", "library_versions"])
def test_a_failed_export_leaves_no_numbered_version(trained, monkeypatch, failing_step):
    model, config, datasets = trained
    keras_mtl.export_run(model, config, datasets)

    def crash(*args, **kwargs):  # after the SavedModel files were written
        raise RuntimeError(f"simulated crash in {failing_step}")

    monkeypatch.setattr(export_lib, failing_step, crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        keras_mtl.export_run(model, config, datasets)
    base = Path(config.export.base_dir) / "shapes"
    assert sorted(p.name for p in base.iterdir()) == ["1"]
    monkeypatch.undo()
    assert keras_mtl.export_run(model, config, datasets) == base / "2"


def test_a_mismatching_reload_is_caught(trained, monkeypatch):
    model, config, datasets = trained
    original = export_lib._verify

    def perturbed(version_dir, model, inputs, atol, *rest):
        return original(version_dir, model, inputs, -1.0, *rest)  # any difference fails

    monkeypatch.setattr(export_lib, "_verify", perturbed)
    with pytest.raises(RuntimeError, match="differs from the model's"):
        keras_mtl.export_run(model, config, datasets)


def test_leftovers_of_a_killed_export_are_ignored(trained):
    model, config, datasets = trained
    base = Path(config.export.base_dir) / "shapes"
    (base / ".tmp-export-killed").mkdir(parents=True)
    (base / "notes").mkdir()
    assert keras_mtl.list_versions(base) == []
    assert keras_mtl.export_run(model, config, datasets) == base / "1"
    (base / "00000007").mkdir()
    assert keras_mtl.list_versions(base) == [1, 7]
    assert keras_mtl.export_run(model, config, datasets) == base / "8"
    assert (
        json.loads((base / "8" / "assets.extra" / "keras_mtl.json").read_text())["name"]
        == "shapes"
    )


def test_export_keeps_tensorflow_info_lines_quiet(trained, tmp_path):
    """In a notebook TensorFlow logs INFO, which named the temporary directory."""
    import logging

    import tensorflow as tf

    model, _, _ = trained
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        keras_mtl.export_saved_model(model, tmp_path, "quiet")
        assert logger.level == logging.INFO  # restored
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert not [r.getMessage() for r in records if r.levelno < logging.WARNING]


def _finished_pid():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_an_export_removes_temporaries_of_killed_or_old_exports(trained):
    model, config, datasets = trained
    base = Path(config.export.base_dir) / "shapes"
    base.mkdir(parents=True)
    host = export_lib._host()
    killed = base / f".tmp-export-{host}-{_finished_pid()}-abc"  # SIGKILLed writer
    old = base / ".tmp-export-q1w2e3"  # older than an hour, writer unknown
    running = base / f".tmp-export-{host}-{os.getpid()}-xyz"  # still writing
    for path in (killed, old, running):
        (path / "variables").mkdir(parents=True)
    two_hours_ago = time.time() - 2 * 3600
    os.utime(old, (two_hours_ago, two_hours_ago))
    assert keras_mtl.export_run(model, config, datasets) == base / "1"
    assert sorted(p.name for p in base.iterdir()) == [running.name, "1"]
    assert list(base.glob(f".tmp-export-{host}-{os.getpid()}-*")) == [running]


def test_an_export_into_a_file_is_refused(trained, tmp_path):
    model, config, datasets = trained
    blocker = tmp_path / "models.txt"
    blocker.write_text("")
    config = config.replace([f"export.base_dir={json.dumps(str(blocker))}"])
    with pytest.raises(ValueError, match=r"`export.base_dir` must be .* is a file"):
        keras_mtl.export_run(model, config, datasets)
