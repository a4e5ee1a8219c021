"""`keras-mtl evaluate` and `keras-mtl predict`: an exported SavedModel at work.

    keras-mtl evaluate --model DIR [--split test|validation] [--set KEY=VALUE ...]
    keras-mtl predict --model DIR --input FILE
    keras-mtl predict --model DIR --input IMAGE [IMAGE ...]

`predict` takes TF Serving's request body (rows or columns), a CSV with one
column per input, a `.npy` array for a single-input model, or JPEG/PNG files
for an image model, and prints what TF Serving would answer, through the same
JSON codec as `keras-mtl serve`. Image files go to an `image_input = "bytes"`
export as they are; for a float-pixel export they are decoded and resized
here the way the `images` source does.
"""

import json
from pathlib import Path

from keras_mtl.cli.common import UsageError


def _check_model_dir(model):
    """Refuses a `--model` that is not a directory before TensorFlow starts."""
    if not Path(model).is_dir():
        raise UsageError(
            f"--model: No SavedModel at {model}: expected a model directory such "
            "as saved_models/shapes or one of its versions (saved_models/shapes/1)."
        )


def _cmd_evaluate(args):
    _check_model_dir(args.model)
    from keras_mtl.evaluation.report import evaluate_saved_model

    metrics = evaluate_saved_model(args.model, args.split, args.overrides)
    print(json.dumps(metrics, indent=1))


def _read_inputs(path, input_specs):
    import numpy as np

    from keras_mtl.saved_model import rows_to_columns

    input_names = sorted(input_specs)
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--input: no such file: {path}")
    if path.suffix == ".npy":
        if len(input_names) != 1:
            raise UsageError(
                f"--input: a .npy file feeds a model with one input; this one has "
                f"{sorted(input_names)}. Use JSON rows or CSV."
            )
        return {input_names[0]: np.load(path, allow_pickle=False)}
    if path.suffix == ".csv":
        import csv

        try:
            with open(path, newline="", encoding="utf-8-sig") as file:
                rows = list(csv.DictReader(file, skipinitialspace=True))
        except UnicodeDecodeError:
            raise UsageError(
                f"--input {path}: a CSV file must be UTF-8 text; save it as UTF-8."
            ) from None
        columns = rows_to_columns(rows, input_names)
        for name, spec in input_specs.items():  # CSV holds text; "" is missing.
            if spec.dtype.is_floating and name in columns:
                columns[name] = [
                    float(v) if v.strip() else float("nan") for v in columns[name]
                ]
        return columns
    raise UsageError(
        f"--input: expected a .json, .csv or .npy file, or JPEG/PNG images. Received: {path}"
    )


def _predict_json(model, path):
    """A TF Serving request body (or a plain list of rows) through the same
    JSON codec as `keras-mtl serve`; returns the response body."""
    from keras_mtl.saved_model import SIGNATURE
    from keras_mtl.serving.json_predict import (
        predict_request_from_json,
        tensors_to_json,
    )
    from keras_mtl.serving.status import ServingError

    body = path.read_bytes()
    if body.lstrip().startswith(b"["):  # plain rows: TF Serving's "instances"
        body = b'{"instances": ' + body + b"}"

    def input_infos(signature_name):
        if (signature_name or SIGNATURE) not in model.signature_inputs:
            raise UsageError(
                f"--input: the model has no signature {signature_name!r}; it has "
                f"{sorted(model.signature_inputs)}."
            )
        return model.signature_inputs[signature_name or SIGNATURE]

    try:
        request = predict_request_from_json(body, input_infos)
        if (request.signature_name or SIGNATURE) == SIGNATURE:
            outputs = model.predict(request.inputs)
        else:
            outputs = model.run(request.inputs, request.signature_name)
        return tensors_to_json(outputs, request.format)
    except ServingError as error:
        raise UsageError(f"--input {path}: {error.message}") from None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _read_images(paths, input_specs):
    """Image files as the one input of `input_specs`: their bytes for a string
    input (`image_input = "bytes"`), decoded and resized pixels for a float one.
    """
    import numpy as np
    import tensorflow as tf

    from keras_mtl.data.image_files import decode_image

    (name, spec), *others = input_specs.items()
    pixels = spec.dtype.is_floating and spec.shape.rank == 4 and spec.shape[-1] == 3
    if others or not (spec.dtype == tf.string or pixels):
        raise UsageError(
            f"--input: image files feed a model with one image input; this one "
            f"has inputs {sorted(input_specs)}."
        )
    contents, images = [], []
    for path in paths:
        data = Path(path).read_bytes()
        size = tuple(spec.shape[1:3]) if pixels else None
        try:
            image = decode_image(data, size or (1, 1))
        except (tf.errors.InvalidArgumentError, ValueError):
            raise UsageError(
                f"--input {path}: not a readable image; expected a JPEG or PNG file."
            ) from None
        contents.append(data)
        images.append(image.numpy())
    if pixels:
        return {name: np.stack(images)}
    return {name: np.array(contents, dtype=object)}


def _cmd_predict(args):
    _check_model_dir(args.model)
    for path in args.input:
        if not Path(path).is_file():
            raise UsageError(f"--input: no such file: {path}")
    from keras_mtl.saved_model import LoadedModel
    from keras_mtl.serving.json_predict import ROW, tensors_to_json

    model = LoadedModel(args.model)
    if all(Path(path).suffix.lower() in IMAGE_SUFFIXES for path in args.input):
        outputs = model.predict(_read_images(args.input, model.input_specs))
        print(tensors_to_json(outputs, ROW).decode())
        return
    if len(args.input) > 1:
        raise UsageError(
            "--input: several files are image files (.png, .jpg, .jpeg); JSON, "
            f"CSV and .npy input is one file. Received: {args.input}"
        )
    path = Path(args.input[0])
    if path.is_file() and path.suffix not in (".npy", ".csv"):
        print(_predict_json(model, path).decode())
        return
    outputs = model.predict(_read_inputs(path, model.input_specs))
    print(tensors_to_json(outputs, ROW).decode())


def add_commands(commands):
    """Adds `evaluate` and `predict` to the `keras-mtl` sub-command parsers."""
    evaluate = commands.add_parser(
        "evaluate", help="per-task test metrics of a SavedModel"
    )
    evaluate.add_argument(
        "--model", required=True, help="a SavedModel version or model directory"
    )
    evaluate.add_argument("--split", choices=("test", "validation"), default="test")
    evaluate.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override the recorded config, e.g. data.path=/new/place.csv",
    )
    evaluate.set_defaults(run=_cmd_evaluate)

    predict = commands.add_parser("predict", help="predictions of a SavedModel as JSON")
    predict.add_argument(
        "--model", required=True, help="a SavedModel version or model directory"
    )
    predict.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="JSON rows ({'instances': [...]}), CSV or .npy; or JPEG/PNG files",
    )
    predict.set_defaults(run=_cmd_predict)
