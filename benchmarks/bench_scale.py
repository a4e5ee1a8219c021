"""How training time and memory grow with examples (1x, 2x, 4x) and width.

Each point is `keras-mtl train --no-export` for two epochs in a fresh process:
its wall time (TensorFlow start-up, tracing, training and the test evaluation)
and its own peak RSS.
"""

import json
import tempfile
from pathlib import Path

import processes

import harness
import workloads

BASE = {"mlp": ("adult", 4000), "cnn": ("shapes", 2000)}


def _point(preset, examples, width_factor, work, extra):
    from keras_mtl import load_config

    width = load_config(preset).model.width * width_factor
    run_dir = Path(work) / f"{preset}-{examples}-{width}"
    args = ["train", "--preset", preset, "--no-export", "--verbose", "0"]
    for override in [
        "train.epochs=2",
        f"data.max_examples={examples}",
        f"model.width={width}",
        f"train.run_dir={run_dir}",
        *extra,
    ]:
        args += ["--set", override]
    seconds, peak, _ = processes.run_measured(args)
    return {
        "examples": examples,
        "width": width,
        "process_seconds": seconds,
        "peak_rss_mib": peak,
    }


def _plot(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for trunk, points in results.items():
        by_examples = [p for p in points if p["axis"] == "examples"]
        by_width = [p for p in points if p["axis"] == "width"]
        axes[0].plot(
            [p["examples"] for p in by_examples],
            [p["process_seconds"] for p in by_examples],
            "o-",
            label=trunk,
        )
        axes[1].plot(
            [p["width"] for p in by_width],
            [p["process_seconds"] for p in by_width],
            "o-",
            label=trunk,
        )
    axes[0].set(
        title="Training examples",
        xlabel="examples",
        ylabel="process wall time, s (2 epochs)",
    )
    axes[1].set(
        title="Trunk width",
        xlabel="width (units or first-stage filters)",
        ylabel="process wall time, s (2 epochs)",
    )
    for axis in axes:
        axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle("keras-mtl train: scaling")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def run(quick=False):
    factors = (1, 2) if quick else (1, 2, 4)
    work = tempfile.mkdtemp(prefix="keras-mtl-bench-scale-")
    results, rows = {}, []
    for trunk, (preset, base) in BASE.items():
        extra = [f"data.path={workloads.adult_csv()}"] if preset == "adult" else []
        points = []
        for factor in factors:
            points.append(
                {"axis": "examples", **_point(preset, base * factor, 1, work, extra)}
            )
        for factor in factors[1:]:
            points.append(
                {"axis": "width", **_point(preset, base, factor, work, extra)}
            )
        results[f"{trunk} ({preset})"] = points
        for point in points:
            rows.append(
                [
                    f"{trunk} ({preset})",
                    point["axis"],
                    point["examples"],
                    point["width"],
                    f"{point['process_seconds']:.1f}",
                    f"{point['peak_rss_mib']:.0f}",
                ]
            )
    plot = _plot(results, harness.RESULTS / "scale.png")
    table = harness.markdown_table(
        [
            "trunk",
            "varied",
            "examples",
            "width",
            "wall s (2 epochs, process)",
            "peak RSS MiB",
        ],
        rows,
    )
    note = "Wall time includes TensorFlow start-up (about 5 s) and evaluation on the test split."
    if plot:
        note += "\n\n![scaling](scale.png)"
    return {
        "title": "Scaling with examples and width",
        "markdown": f"{table}\n\n{note}",
        "results": json.loads(json.dumps(results)),
    }
