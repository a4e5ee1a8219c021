"""Images from files (`data.source = "images"`) and exports that take image bytes."""

import base64
import csv
import json
import logging
import re

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

import keras_mtl
from keras_mtl import cli
from keras_mtl.data.shapes.files import write_image_files
from keras_mtl.saved_model import (
    FLOAT_SIGNATURE,
    IMAGE_BYTES_INPUT,
    WARMUP_FILE,
    LoadedModel,
)
from keras_mtl.serving import Client, ModelServer, ServedModelConfig, ServingError
from keras_mtl.serving.status import Code

import serving_helpers as helpers

JPEG_ROWS = (1, 5)  # rows whose image is rewritten as a JPEG file


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _write_rows(path, rows):
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def image_csv(tmp_path_factory):
    """24 shapes images (2 per fine class) as PNG files, two of them JPEG."""
    directory = tmp_path_factory.mktemp("images")
    path = write_image_files(directory, 24)
    rows = _rows(path)
    for row in JPEG_ROWS:
        png = directory / rows[row]["image"]
        image = tf.io.decode_png(png.read_bytes())
        jpeg = png.with_suffix(".jpg")
        jpeg.write_bytes(tf.io.encode_jpeg(image).numpy())
        png.unlink()
        rows[row]["image"] = str(jpeg.relative_to(directory))
    _write_rows(path, rows)
    return path


def _overrides(path, tmp_path, *extra):
    return [
        "data.source=images",
        f"data.path={path}",
        "data.image_size=[16, 16]",
        "data.test_fraction=0.25",
        "data.validation_fraction=0.25",
        "train.epochs=1",
        "train.batch_size=8",
        f"train.run_dir={tmp_path / 'runs'}",
        f"export.base_dir={tmp_path / 'saved_models'}",
        "model.width=4",
        "model.depth=1",
        "model.head_units=8",
        *extra,
    ]


def _decoded(path, size=(16, 16)):
    image = tf.io.decode_image(path.read_bytes(), channels=3, expand_animations=False)
    return tf.image.resize(image, size).numpy()


@pytest.mark.parametrize("cache", [True, False])
def test_a_csv_of_image_files_becomes_resized_pixels_and_labels(
    image_csv, tmp_path, cache
):
    config = keras_mtl.load_config(
        "shapes", _overrides(image_csv, tmp_path, f"data.cache={str(cache).lower()}")
    )
    datasets = keras_mtl.load_datasets(config)
    assert datasets.sizes == {"train": 12, "validation": 6, "test": 6}
    assert datasets.features[0].shape == (16, 16, 3)
    assert datasets.class_names["coarse"] == ["line", "other", "polygon", "round"]
    assert len(datasets.class_names["fine"]) == 12
    # Every test row's pixels are its file decoded and resized, its labels
    # the CSV's class names (JPEG and PNG rows alike).
    by_pixels = {
        _decoded(image_csv.parent / row["image"]).tobytes(): row
        for row in _rows(image_csv)
    }
    seen = 0
    for inputs, labels in datasets.test:
        for index, image in enumerate(inputs["image"].numpy()):
            row = by_pixels[image.tobytes()]
            coarse = datasets.class_names["coarse"][labels["coarse"][index]]
            fine = datasets.class_names["fine"][labels["fine"][index]]
            assert (coarse, fine) == (row["coarse_label"], row["label"])
            seen += 1
    assert seen == 6
    train_images = np.concatenate([x["image"].numpy() for x, _ in datasets.train])
    assert train_images.shape == (8, 16, 16, 3)  # 12 rows, 1 full batch


def test_augmentation_layers_transform_in_training_only(image_csv, tmp_path):
    config = keras_mtl.load_config(
        "shapes", _overrides(image_csv, tmp_path, "data.augment=['flip', 'crop']")
    )
    datasets = keras_mtl.load_datasets(config)
    model = keras_mtl.build_model(config, datasets.features)
    augment = model.get_layer("augment")
    assert [type(layer).__name__ for layer in augment.layers] == [
        "RandomFlip",
        "RandomZoom",
        "RandomTranslation",
    ]
    images, _ = next(iter(datasets.test))
    images = images["image"]
    np.testing.assert_array_equal(augment(images, training=False), images)
    assert not np.allclose(augment(images, training=True), images)
    # Active augmentation would draw anew in each call.
    first = model.predict({"image": images}, verbose=0)
    again = model.predict({"image": images}, verbose=0)
    np.testing.assert_array_equal(again["fine"], first["fine"])
    model.save(tmp_path / "augmented.keras")
    loaded = keras.saving.load_model(tmp_path / "augmented.keras", compile=False)
    assert len(loaded.get_layer("augment").layers) == 3


def test_a_missing_or_unreadable_image_stops_with_one_line_naming_it(
    image_csv, tmp_path, capsys, caplog
):
    rows = _rows(image_csv)
    rows[3]["image"] = "images/nowhere.png"
    (image_csv.parent / "broken.png").write_bytes(b"\x89PNG not really")
    rows[7]["image"] = "broken.png"
    bad_csv = image_csv.parent / "bad.csv"
    _write_rows(bad_csv, rows)
    sets = [
        arg for override in _overrides(bad_csv, tmp_path) for arg in ("--set", override)
    ]
    assert cli.main(["train", "--preset", "shapes", *sets, "--no-export"]) == 2
    lines = [
        line for line in capsys.readouterr().err.splitlines() if "keras-mtl" in line
    ]
    assert len(lines) == 1
    assert f"{bad_csv}, line 5: image file " in lines[0]
    assert "nowhere.png does not exist" in lines[0]
    assert "data.skip_bad_images=true" in lines[0]

    config = keras_mtl.load_config(
        "shapes", _overrides(bad_csv, tmp_path, "data.skip_bad_images=true")
    )
    with caplog.at_level(logging.WARNING, logger="keras_mtl"):
        datasets = keras_mtl.load_datasets(config)
    assert sum(datasets.sizes.values()) == 22
    assert "skipped 2 of 24 rows" in caplog.text
    assert "missing (1) or unreadable (1)" in caplog.text


@pytest.fixture(scope="module")
def bytes_export(image_csv, tmp_path_factory):
    """`keras-mtl train` on the image files (augmentation layers included),
    exported with image_input=bytes."""
    workdir = tmp_path_factory.mktemp("bytes_export")
    overrides = _overrides(
        image_csv,
        workdir,
        "export.image_input=bytes",
        "data.augment=['flip', 'crop']",
    )
    sets = [arg for override in overrides for arg in ("--set", override)]
    assert cli.main(["train", "--preset", "shapes", *sets, "--verbose", "0"]) == 0
    return next((workdir / "saved_models" / "shapes").iterdir())


def _files(image_csv, rows=(0, 1, 2)):
    return [image_csv.parent / _rows(image_csv)[row]["image"] for row in rows]


def test_the_bytes_signature_equals_the_float_one_on_decoded_images(
    bytes_export, image_csv
):
    model = LoadedModel(bytes_export)
    specs = model.signature_defs["serving_default"].inputs
    assert list(specs) == [IMAGE_BYTES_INPUT]
    assert specs[IMAGE_BYTES_INPUT].dtype == tf.string.as_datatype_enum
    assert [d.size for d in specs[IMAGE_BYTES_INPUT].tensor_shape.dim] == [-1]
    files = _files(image_csv)  # a PNG and a JPEG among them
    from_bytes = model.predict(
        {IMAGE_BYTES_INPUT: np.array([f.read_bytes() for f in files], object)}
    )
    pixels = np.stack([_decoded(f) for f in files])
    from_pixels = model.run({"image": pixels}, FLOAT_SIGNATURE)
    assert sorted(from_bytes) == ["coarse", "fine"]
    for name, value in from_pixels.items():
        np.testing.assert_allclose(from_bytes[name], value, atol=1e-6)
    assert model.takes_image_bytes
    metrics = keras_mtl.evaluate_saved_model(bytes_export)  # on the float signature
    assert sorted(metrics) == ["coarse", "fine"]
    records = tf.data.TFRecordDataset(str(bytes_export / "assets.extra" / WARMUP_FILE))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    assert len(logs) == 4
    request = logs[0].predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert request.inputs[IMAGE_BYTES_INPUT].dtype == tf.string.as_datatype_enum
    assert tf.make_ndarray(request.inputs[IMAGE_BYTES_INPUT])[0][:4] == b"\x89PNG"


def test_predict_takes_image_files(bytes_export, image_csv, capsys):
    files = _files(image_csv)
    assert (
        cli.main(["predict", "--model", str(bytes_export), "--input", *map(str, files)])
        == 0
    )
    answer = json.loads(capsys.readouterr().out)["predictions"]
    expected = LoadedModel(bytes_export).predict(
        {IMAGE_BYTES_INPUT: np.array([f.read_bytes() for f in files], object)}
    )
    np.testing.assert_allclose(
        [row["fine"] for row in answer], expected["fine"], atol=1e-5
    )
    not_an_image = image_csv.parent / "notes.png"
    not_an_image.write_text("hello")
    assert (
        cli.main(
            ["predict", "--model", str(bytes_export), "--input", str(not_an_image)]
        )
        == 2
    )
    assert "not a readable image" in capsys.readouterr().err


def test_rest_b64_and_grpc_strings_reach_the_bytes_signature(bytes_export, image_csv):
    files = _files(image_csv)
    contents = [f.read_bytes() for f in files]
    expected = LoadedModel(bytes_export).predict(
        {IMAGE_BYTES_INPUT: np.array(contents, object)}
    )
    config = ServedModelConfig("shapes", str(bytes_export.parent))
    with (
        ModelServer(
            [config],
            rest_api_port=helpers.free_port(),
            grpc_port=helpers.free_port(),
            poll_wait_seconds=0,
        ) as server,
        Client(server.rest_url) as client,
    ):
        instances = [{"b64": base64.b64encode(data).decode()} for data in contents]
        rest = client.predict("shapes", instances=instances)
        metadata = client.metadata("shapes")
        not_an_image = {"b64": base64.b64encode(b"hello").decode()}
        with pytest.raises(ServingError) as refused:
            client.predict("shapes", instances=[not_an_image])
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "shapes"
            request.inputs[IMAGE_BYTES_INPUT].CopyFrom(
                tf.make_tensor_proto(np.array(contents, object))
            )
            response = stub.Predict(request, timeout=30)
    np.testing.assert_allclose(
        [row["coarse"] for row in rest], expected["coarse"], atol=1e-5
    )
    np.testing.assert_array_equal(
        tf.make_ndarray(response.outputs["fine"]), expected["fine"]
    )
    assert refused.value.code == Code.INVALID_ARGUMENT
    assert "image" in refused.value.message.lower()
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"][IMAGE_BYTES_INPUT] == {
        "dtype": "DT_STRING",
        "tensor_shape": {"dim": [{"size": "-1", "name": ""}], "unknown_rank": False},
        "name": "serving_default_image_bytes:0",
    }
    assert signatures[FLOAT_SIGNATURE]["inputs"]["image"]["dtype"] == "DT_FLOAT"


def test_bytes_export_refuses_a_model_without_one_image_input(tmp_path):
    model = keras_mtl.build_model(
        keras_mtl.load_config("adult", ["model.width=4", "model.depth=1"]),
        helpers.TABULAR_FEATURES,
    )
    with pytest.raises(ValueError, match="one image input"):
        keras_mtl.export_saved_model(model, tmp_path, "t", image_input="bytes")


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("data.image_size=[32]", "`data.image_size` must be [height, width]"),
        ("data.image_size=[0, 8]", "`data.image_size` must be [height, width]"),
        ("data.augment=['mirror']", "`data.augment` must be one of ['flip', 'crop'"),
        ("export.image_input=png", "`export.image_input` must be one of"),
    ],
)
def test_image_keys_are_checked(override, fragment):
    overrides = ["data.source=images", "data.path=x.csv", override]
    with pytest.raises(ValueError, match=re.escape(fragment)):
        keras_mtl.load_config("shapes", overrides)
    with pytest.raises(ValueError, match="data.augment"):
        keras_mtl.load_config("adult", ["data.augment=['flip']"])
