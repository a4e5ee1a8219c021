"""GPU check: a backbone model under MirroredStrategy on 1 and N devices.

    python benchmarks/gpu_check.py            # or: make gpu-check
    python benchmarks/gpu_check.py --quick    # seconds, on CPU (the test's mode)

On every visible GPU (`tf.config.list_physical_devices("GPU")`) it trains the
same two-head model, a `keras.applications` backbone as the Trunk
(MobileNetV3Small by default) loaded from a weights file that it writes, first
under MirroredStrategy over one device and then over N, from the same initial
weights on the same unshuffled batches (the global batch is the same in both
runs). It checks that the per-task losses do not depend on the replica count
(each epoch's training losses and a final evaluation, relative difference
within `--tolerance`) and measures images/s of each run and their ratio
(strong scaling: the same global batch split over N devices).

`--trunk cnn` runs the same check with the small built-in trunk (the test's
smoke run). Devices: N GPUs when there are several; one GPU is split into 2 logical GPUs
(the N-replica path runs for real, but the ratio is then no speed-up
measurement: both share one chip); no GPU: the CPU is split into 2 logical
devices. Results go to `benchmarks/results/gpu.json` (`--output`); the exit
status is 1 when the replica-invariance check fails.

The backbone's batch norms run in inference mode (pretrained-weights mode,
`keras_mtl.models.backbones`): per-replica batch statistics would make the
losses depend on the replica count by design.

Then it exports the N-replica model as a SavedModel and calls it as
`keras-mtl serve` does (`LoadedModel.run`), and reports the executor `run`
keeps (TensorFlow's single-threaded one cannot run a graph whose ops are
split across devices, and then the default one is kept), that its outputs
equal the signature's public call, and the median time of each call.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULTS = Path(__file__).resolve().parent / "results"

# Per device kind: image side, per-replica batch, steps per epoch, epochs (the
# first is the warm-up, untimed), distinct batches in the pool.
SETTINGS = {
    "gpu": {"image_size": 224, "batch": 64, "steps": 20, "epochs": 4, "pool": 4},
    "cpu": {"image_size": 32, "batch": 16, "steps": 8, "epochs": 3, "pool": 4},
    "quick": {"image_size": 32, "batch": 4, "steps": 2, "epochs": 2, "pool": 2},
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds, tiny sizes")
    parser.add_argument(
        "--trunk",
        default="keras.applications.MobileNetV3Small",
        help="model.trunk: a keras.applications backbone, or 'cnn' for a smoke test",
    )
    parser.add_argument(
        "--gpu-memory-mb",
        type=int,
        default=10240,
        help="memory of each logical GPU when one GPU is split in two",
    )
    parser.add_argument("--image-size", type=int, help="image side in pixels")
    parser.add_argument("--batch-per-replica", type=int, help="N-replica run's share")
    parser.add_argument("--steps", type=int, help="steps per epoch")
    parser.add_argument("--epochs", type=int, help="epochs, the first untimed")
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument(
        "--tolerance",
        type=float,
        help="max relative per-task loss difference 1 vs N (default 1e-4 on "
        "CPU, 2e-3 on GPU: TF32 and reduction order)",
    )
    parser.add_argument("--output", default=str(RESULTS / "gpu.json"))
    return parser.parse_args(argv)


def configure_devices(args):
    """`(kind, devices, physical names, note)`; splits devices before TF starts."""
    import tensorflow as tf

    import keras_mtl

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        names = [_gpu_name(gpu) for gpu in gpus]
        return "gpu", [f"/gpu:{i}" for i in range(len(gpus))], names, ""
    if len(gpus) == 1:
        try:
            tf.config.set_logical_device_configuration(
                gpus[0],
                [tf.config.LogicalDeviceConfiguration(args.gpu_memory_mb)] * 2,
            )
        except RuntimeError:
            pass  # TensorFlow already started; list what it has.
        logical = tf.config.list_logical_devices("GPU")
        note = (
            "one physical GPU split into 2 logical GPUs: the N-replica path runs "
            "for real, the scaling ratio is not a speed-up measurement"
        )
        return "gpu", [d.name for d in logical], [_gpu_name(gpus[0])], note
    keras_mtl.configure_cpu_replicas(2)
    logical = tf.config.list_logical_devices("CPU")[:2]
    note = (
        "no GPU: 2 logical CPU devices on the same cores; the N-replica path "
        "runs for real, the scaling ratio is not a speed-up measurement"
    )
    return "cpu", [d.name for d in logical], [cpu_name()], note


def _gpu_name(gpu):
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(gpu)
    return details.get("device_name", gpu.name)


def cpu_name():
    """The CPU model from /proc/cpuinfo (the platform's name elsewhere)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_strategy(kind, devices, replicas, logical_split):
    import tensorflow as tf

    chosen = devices[:replicas]
    if kind == "gpu" and not logical_split:
        return tf.distribute.MirroredStrategy(chosen)
    # Logical devices of one chip: reduce on the first (as keras_mtl.distribute).
    return tf.distribute.MirroredStrategy(
        chosen, cross_device_ops=tf.distribute.ReductionToOneDevice(chosen[0])
    )


def make_config(args, weights_path):
    import keras_mtl

    weights = [f"model.trunk_weights={weights_path}"] if weights_path else []
    return keras_mtl.load_config(
        "shapes",
        [
            f"model.trunk={args.trunk}",
            *weights,
            "model.head_units=64",
            "train.learning_rate=0.0001",
            f"train.mixed_precision={str(args.mixed_precision).lower()}",
            f"train.jit_compile={str(args.jit_compile).lower()}",
            # One step per call in both runs: the N-replica run on CPU devices
            # takes no more, and with a repeated dataset Keras rounds an
            # epoch up to whole calls, so "auto" would train more steps there.
            "train.steps_per_execution=1",
        ],
    )


def write_backbone_weights(args, shape, path):
    """Random backbone weights saved to a file: the weights-file path of
    `model.trunk_weights`, as a user's pretrained file would be loaded."""
    import keras

    keras.utils.set_random_seed(0)
    application = getattr(keras.applications, args.trunk.rsplit(".", 1)[1])
    backbone = application(
        input_shape=shape, include_top=False, pooling="avg", weights=None
    )
    backbone.save_weights(path)


def make_dataset(config, sizes, global_batch):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    count = sizes["pool"] * global_batch
    side = sizes["image_size"]
    images = rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8)
    labels = {
        task.name: rng.integers(0, task.num_classes, count).astype("int32")
        for task in config.tasks
    }
    dataset = tf.data.Dataset.from_tensor_slices(({"image": images}, labels))
    dataset = dataset.map(lambda x, y: ({"image": tf.cast(x["image"], "float32")}, y))
    return dataset.batch(global_batch, drop_remainder=True).repeat().prefetch(2)


class EpochTimes:
    """Wall seconds of each epoch."""

    def __init__(self):
        import keras

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.start = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.seconds.append(time.perf_counter() - inner.start)

        self.seconds = []
        self.callback = Callback()


def run_replicas(config, sizes, strategy, dataset, initial_weights, evaluation):
    import keras

    import keras_mtl
    from keras_mtl.data.features import ImageFeature

    side = sizes["image_size"]
    features = (ImageFeature("image", (side, side, 3)),)
    keras.utils.set_random_seed(0)
    model = keras_mtl.build_model(config, features, strategy=strategy)
    if initial_weights is not None:
        model.set_weights(initial_weights)
    weights = model.get_weights()
    times = EpochTimes()
    history = model.fit(
        dataset,
        epochs=sizes["epochs"],
        steps_per_epoch=sizes["steps"],
        callbacks=[times.callback],
        verbose=0,
        shuffle=False,
    )
    evaluated = model.evaluate(evaluation, steps=1, verbose=0, return_dict=True)
    names = config.task_names
    timed = times.seconds[1:] or times.seconds
    global_batch = int(next(iter(evaluation))[0]["image"].shape[0])
    images_per_second = sizes["steps"] * global_batch / (sum(timed) / len(timed))
    result = {
        "replicas": strategy.num_replicas_in_sync,
        "devices": list(strategy.extended.worker_devices),
        "images_per_second": round(images_per_second, 1),
        "epoch_seconds": [round(s, 3) for s in times.seconds],
        "train_losses": {n: history.history[f"{n}_loss"] for n in names},
        "eval_losses": {n: float(evaluated[f"{n}_loss"]) for n in names},
    }
    return result, weights, model


def check_serving(model, evaluation, scratch, calls=20):
    """Exports `model`, calls it as the server does and as the public
    signature call does; returns what `LoadedModel.run` chose and how long
    each call takes (median ms, one evaluation batch)."""
    import numpy as np

    from keras_mtl.export import export_saved_model
    from keras_mtl.saved_model import LoadedModel

    loaded = LoadedModel(export_saved_model(model, scratch, "gpu_check"))
    images = next(iter(evaluation))[0]["image"].numpy()
    expected = loaded.predict({"image": images})
    loaded.run({"image": images})  # the public call, then the direct one's check
    outputs = loaded.run({"image": images})
    difference = max(
        float(np.max(np.abs(outputs[name] - expected[name]))) for name in expected
    )
    times = {}
    for label, call in (
        ("run", lambda: loaded.run({"image": images})),
        ("public_call", lambda: loaded.predict({"image": images})),
    ):
        seconds = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            seconds.append(time.perf_counter() - start)
        times[f"{label}_ms"] = round(1000 * float(np.median(seconds)), 3)
    return {
        "executor": loaded.executor["serving_default"],
        "max_abs_difference_from_public_call": difference,
        "batch": int(images.shape[0]),
        **times,
    }


def compare(one, many, tolerance):
    """Max relative difference of each task's losses, 1 vs N replicas."""
    differences = {}
    for task in one["train_losses"]:
        pairs = list(
            zip(one["train_losses"][task], many["train_losses"][task], strict=True)
        )
        pairs.append((one["eval_losses"][task], many["eval_losses"][task]))
        differences[task] = max(abs(a - b) / max(abs(a), 1e-12) for a, b in pairs)
    return differences, all(d <= tolerance for d in differences.values())


def summary_record(report):
    """`report` with what `benchmarks/run_all.py` needs to list it in
    SUMMARY.md: name, machine, creation time, title and a markdown table."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import harness

    serving = report["serving"]
    rows = [
        [
            run["replicas"],
            len(run["devices"]),
            run["images_per_second"],
        ]
        for run in report["runs"]
    ]
    differences = ", ".join(
        f"{task} {value:.1e}"
        for task, value in report["loss_relative_differences"].items()
    )
    markdown = (
        f"`{report['command'].strip()}`: {report['trunk']}, "
        f"{report['image_size']}x{report['image_size']} images, global batch "
        f"{report['global_batch']}, on {report['device_kind']} "
        f"{report['physical_devices']}. {report['note']}\n\n"
        + harness.markdown_table(["replicas", "devices", "images/s"], rows)
        + f"\n\nScaling ratio (N / 1): {report['scaling_ratio']}. Largest "
        f"relative per-task loss difference 1 vs N: {differences} (tolerance "
        f"{report['tolerance']}): {'PASS' if report['passed'] else 'FAIL'}."
        f"\n\nServed (`LoadedModel.run`, batch {serving['batch']}): "
        f"{serving['executor']} executor, {serving['run_ms']} ms against "
        f"{serving['public_call_ms']} ms for the public call; largest difference "
        f"from the public call's outputs "
        f"{serving['max_abs_difference_from_public_call']:.1e}."
    )
    return {
        "name": "gpu",
        "machine": harness.machine(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "title": "GPU check: MirroredStrategy on 1 and N devices",
        "markdown": markdown,
        **report,
    }


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    kind, devices, physical, note = configure_devices(args)
    import keras
    import tensorflow as tf

    if args.jit_compile and kind == "cpu":
        raise SystemExit(
            "--jit-compile fails under MirroredStrategy on logical CPU devices "
            "(TensorFlow 2.21); run it where GPUs are visible."
        )
    sizes = dict(SETTINGS["quick" if args.quick else kind])
    for key, value in (
        ("image_size", args.image_size),
        ("batch", args.batch_per_replica),
        ("steps", args.steps),
        ("epochs", args.epochs),
    ):
        if value:
            sizes[key] = value
    tolerance = args.tolerance or (2e-3 if kind == "gpu" else 1e-4)
    replicas = len(devices)
    global_batch = sizes["batch"] * replicas
    logical_split = kind == "gpu" and len(physical) == 1
    side = sizes["image_size"]
    with tempfile.TemporaryDirectory() as scratch:
        weights_path = None
        if args.trunk.startswith("keras.applications."):
            weights_path = os.path.join(scratch, "backbone.weights.h5")
            write_backbone_weights(args, (side, side, 3), weights_path)
        config = make_config(args, weights_path)
        dataset = make_dataset(config, sizes, global_batch)
        evaluation = dataset.take(1).cache()
        runs, initial = [], None
        for count in sorted({1, replicas}):
            strategy = make_strategy(kind, devices, count, logical_split)
            result, weights, model = run_replicas(
                config, sizes, strategy, dataset, initial, evaluation
            )
            initial = initial or weights
            runs.append(result)
        serving = check_serving(model, evaluation, scratch)
    one, many = runs[0], runs[-1]
    differences, passed = compare(one, many, tolerance)
    report = {
        "command": "python benchmarks/gpu_check.py " + " ".join(argv or sys.argv[1:]),
        "passed": passed,
        "device_kind": kind,
        "physical_devices": physical,
        "logical_devices": devices,
        "note": note,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensor_float_32": tf.config.experimental.tensor_float_32_execution_enabled(),
        "trunk": args.trunk,
        "image_size": side,
        "global_batch": global_batch,
        "steps_per_epoch": sizes["steps"],
        "epochs": sizes["epochs"],
        "mixed_precision": args.mixed_precision,
        "jit_compile": args.jit_compile,
        "runs": runs,
        "images_per_second": {str(r["replicas"]): r["images_per_second"] for r in runs},
        "scaling_ratio": round(many["images_per_second"] / one["images_per_second"], 3),
        "loss_relative_differences": differences,
        "tolerance": tolerance,
        "serving": serving,
        "seconds": round(time.perf_counter() - started, 1),
    }
    report = summary_record(report)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{'PASS' if passed else 'FAIL'}: {kind} {physical}, replicas 1 vs "
        f"{replicas}: images/s {one['images_per_second']} vs "
        f"{many['images_per_second']} (ratio {report['scaling_ratio']}), "
        f"loss differences {differences} (tolerance {tolerance}); {output}"
    )
    return report


if __name__ == "__main__":
    sys.exit(0 if main()["passed"] else 1)
