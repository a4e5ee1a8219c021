"""Peak memory of `keras-mtl train` for each preset, each in a fresh process.

`cifar100` needs the TFDS download, which this machine cannot make; it is
measured only where the data is prepared (set KERAS_MTL_CIFAR100_DATA_DIR).
"""

import os
import tempfile

import processes

import harness
import workloads


def run(quick=False):
    epochs = 1 if quick else 2
    work = tempfile.mkdtemp(prefix="keras-mtl-bench-memory-")
    common = [
        f"train.epochs={epochs}",
        f"train.run_dir={work}/runs",
        f"export.base_dir={work}/models",
    ]
    presets = {"shapes": [], "adult": [f"data.path={workloads.adult_csv()}"]}
    if os.environ.get("KERAS_MTL_CIFAR100_DATA_DIR"):
        presets["cifar100"] = [
            f"data.data_dir={os.environ['KERAS_MTL_CIFAR100_DATA_DIR']}"
        ]
    rows, results = [], {}
    for preset, overrides in presets.items():
        args = ["train", "--preset", preset, "--verbose", "0"]
        for override in common + overrides:
            args += ["--set", override]
        seconds, peak, _ = processes.run_measured(args)
        results[preset] = {"seconds": seconds, "peak_rss_mib": peak, "epochs": epochs}
        rows.append([preset, epochs, f"{seconds:.1f}", f"{peak:.0f}"])
    if "cifar100" not in presets:
        rows.append(["cifar100", "-", "not measured: TFDS data not prepared here", "-"])
    table = harness.markdown_table(
        ["preset", "epochs", "wall s (train + evaluate + export)", "peak RSS MiB"], rows
    )
    note = "Each run is `keras-mtl train --preset NAME` in a fresh process, TensorFlow start-up included."
    return {
        "title": "Peak memory of keras-mtl train",
        "markdown": f"{table}\n\n{note}",
        "results": results,
    }
