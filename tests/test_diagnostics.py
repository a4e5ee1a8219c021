"""Gradient diagnostics against a direct `tf.GradientTape` computation."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_models import TABULAR, image_batch, small_config, tabular_batch

import keras_mtl
from keras_mtl.diagnostics import GradientReport

BLOCKS = ("trunk", "head1", "head2")


def direct_gradients(model, inputs, labels):
    """Each task's gradients on each block and on the image, by hand."""
    losses = {
        "first": keras.losses.SparseCategoricalCrossentropy(),
        "second": keras.losses.BinaryCrossentropy(),
    }
    image = tf.convert_to_tensor(inputs["image"])
    gradients = {}
    for task, loss_fn in losses.items():
        with tf.GradientTape() as tape:
            tape.watch(image)
            outputs = model({"image": image}, training=False)
            loss = loss_fn(labels[task], outputs[task])
        sources = {name: model.get_layer(name).trainable_variables for name in BLOCKS}
        flat = tape.gradient(loss, [image, *[v for n in BLOCKS for v in sources[n]]])
        gradients[task] = {"input": [flat[0]], "loss": float(loss)}
        offset = 1
        for name in BLOCKS:
            count = len(sources[name])
            gradients[task][name] = [
                np.zeros(v.shape) if g is None else np.asarray(g)
                for g, v in zip(
                    flat[offset : offset + count], sources[name], strict=True
                )
            ]
            offset += count
    return gradients


def norm(arrays):
    return math.sqrt(sum(float(np.sum(np.square(a))) for a in arrays))


def cosine(first, second):
    dot = sum(float(np.sum(a * b)) for a, b in zip(first, second, strict=True))
    return dot / (norm(first) * norm(second))


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    config = small_config("cnn", head2_input="features+prediction")
    return keras_mtl.build_model(config, strategy=tf.distribute.get_strategy())


def test_diagnostics_equal_a_direct_gradient_tape(model):
    inputs, labels = image_batch(size=8)
    report = keras_mtl.diagnose_gradients(model, (inputs, labels))
    direct = direct_gradients(model, inputs, labels)
    assert report.tasks == ["first", "second"]
    for task in report.tasks:
        assert report.losses[task] == pytest.approx(direct[task]["loss"], rel=1e-6)
        for block in ("input", *BLOCKS):
            assert report.norms[block][task] == pytest.approx(
                norm(direct[task][block]), rel=1e-5, abs=1e-12
            ), (block, task)
    first, second = direct["first"], direct["second"]
    for block in ("trunk", "head1"):
        assert report.cosine[block] == pytest.approx(
            cosine(first[block], second[block]), rel=1e-5
        )
    assert report.cosine["shared"] == pytest.approx(
        cosine(first["trunk"] + first["head1"], second["trunk"] + second["head1"]),
        rel=1e-5,
    )
    # The seed's contract, measured: Loss 1 sends nothing into Head 2.
    assert report.norms["head2"]["first"] == 0.0
    assert report.norms["head2"]["second"] > 0.0 and report.norms["trunk"]["second"] > 0


def test_diagnostics_under_two_replicas_match_one(model):
    strategy = keras_mtl.make_strategy(keras_mtl.TrainConfig(replicas=2))
    config = small_config("cnn", head2_input="features+prediction")
    mirrored = keras_mtl.build_model(config, strategy=strategy)
    mirrored.set_weights(model.get_weights())
    batch = image_batch(size=8)
    one = keras_mtl.diagnose_gradients(model, batch)
    two = keras_mtl.diagnose_gradients(mirrored, batch)
    with strategy.scope():  # also inside the scope, where losses are scaled
        inside = keras_mtl.diagnose_gradients(mirrored, batch)
    for report in (two, inside):
        for block, by_task in one.norms.items():
            for task, value in by_task.items():
                assert report.norms[block][task] == pytest.approx(value, rel=1e-5)
        assert report.losses == pytest.approx(one.losses, rel=1e-6)


def test_report_round_trips_through_logs(model):
    report = keras_mtl.diagnose_gradients(model, image_batch(size=4))
    logs = report.to_logs()
    assert "grad_norm_head2_first" in logs and "grad_cosine_shared" in logs
    assert logs["grad_loss_second"] == report.losses["second"]
    assert GradientReport.from_logs(logs, report.tasks) == report
    with pytest.raises(ValueError, match="weighting.diagnostics=true"):
        GradientReport.from_logs({"loss": 1.0}, report.tasks)


def test_callback_records_every_epoch_into_the_history():
    keras.utils.set_random_seed(1)
    config = small_config("mlp").replace(["weighting.method=famo"])
    model = keras_mtl.build_model(config, TABULAR)
    batch = tabular_batch(size=16)
    data = tf.data.Dataset.from_tensor_slices(batch).batch(8)
    history = model.fit(
        data, epochs=2, verbose=0, callbacks=[keras_mtl.GradientDiagnostics(batch)]
    ).history
    assert len(history["grad_norm_trunk_second"]) == 2
    assert len(history["grad_cosine_trunk"]) == 2
    now = keras_mtl.diagnose_gradients(model, batch).to_logs()
    for key, value in now.items():
        assert history[key][-1] == pytest.approx(value, rel=1e-6), key


def test_an_uncompiled_model_is_refused(model):
    config = small_config("mlp")
    bare = keras_mtl.build_model(config, TABULAR, compile=False)
    with pytest.raises(ValueError, match="needs a compiled model"):
        keras_mtl.diagnose_gradients(bare, tabular_batch())
