"""Multi-worker training on one machine: start-up and steps per second.

    python benchmarks/run_all.py multi_worker [--quick]

The `shapes` preset model (CNN, global batch 128) trains as one process
(default strategy), as a 1-worker and as a 2-worker
`MultiWorkerMirroredStrategy` cluster started by the local launcher
(`keras_mtl.multi_worker.launcher.LocalCluster`, what `keras-mtl train
--workers N` runs). The three runs are interleaved and repeated; the table
holds medians. Start-up is the wall time from starting the launcher to the end
of the chief's first training step (TensorFlow import, joining the cluster,
data, model, tracing). Steps per second are global steps (128 examples each)
over every epoch but the first.

On one machine the workers share its cores, so a cluster here cannot be
faster than one process: this measures the overhead of the multi-worker
path, not a speed-up, which needs one machine (or GPU) per worker.
"""

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import harness

HERE = Path(__file__).resolve().parent
RUNS = (
    ("one process (default strategy)", "default", 1),
    ("1 worker (MultiWorkerMirroredStrategy)", "multi_worker", 1),
    ("2 workers (MultiWorkerMirroredStrategy)", "multi_worker", 2),
)


def _prepare_data(data_dir):
    import tensorflow_datasets as tfds

    import keras_mtl.data.shapes  # noqa: F401  (registers the builder)

    tfds.builder("shapes", data_dir=str(data_dir)).download_and_prepare()


def _run(strategy, workers, data_dir, run_dir, epochs, max_examples):
    from keras_mtl.multi_worker.launcher import LocalCluster

    command = [
        sys.executable,
        str(HERE / "multi_worker_bench_worker.py"),
        strategy,
        str(data_dir),
        str(run_dir),
        str(epochs),
        str(max_examples),
    ]
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        cluster = LocalCluster(
            [], workers, run_dir, log=log, command=lambda index: command, timeout=1800
        )
        launched = time.time()
        result = cluster.run()
    chief = result.attempts[-1]["reports"][0]
    return {
        "startup_s": chief["first_step_at"] - launched,
        "worker_startup_s": chief["first_step_at"] - chief["process_start"],
        "steps_per_second": chief["steps_per_second"],
        "replicas": chief["replicas"],
    }


def run(quick=False):
    repeats, epochs, max_examples = (1, 2, 1024) if quick else (3, 4, 4096)
    work = Path(tempfile.mkdtemp(prefix="keras-mtl-bench-multi-worker-"))
    try:
        _prepare_data(work / "tensorflow_datasets")
        measured = {name: [] for name, _, _ in RUNS}
        for repeat in range(repeats):
            for index, (name, strategy, workers) in enumerate(RUNS):
                run_dir = work / f"run-{repeat}-{index}"
                measured[name].append(
                    _run(
                        strategy,
                        workers,
                        work / "tensorflow_datasets",
                        run_dir,
                        epochs,
                        max_examples,
                    )
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    medians = {
        name: {
            key: statistics.median(run[key] for run in runs)
            for key in ("startup_s", "worker_startup_s", "steps_per_second")
        }
        for name, runs in measured.items()
    }
    base = medians[RUNS[0][0]]["steps_per_second"]
    rows = [
        [
            name,
            workers,
            measured[name][0]["replicas"],
            f"{medians[name]['startup_s']:.1f}",
            f"{medians[name]['worker_startup_s']:.1f}",
            f"{medians[name]['steps_per_second']:.1f}",
            f"{medians[name]['steps_per_second'] / base:.2f}x",
        ]
        for name, _, workers in RUNS
    ]
    table = harness.markdown_table(
        [
            "run",
            "processes",
            "replicas",
            "launch to first step (s)",
            "worker start to first step (s)",
            "steps/s",
            "vs one process",
        ],
        rows,
    )
    markdown = (
        f"`shapes` preset model, global batch 128, {max_examples} training "
        f"examples, {epochs} epochs; median of {repeats} interleaved run(s). "
        "Steps/s exclude the first epoch. The workers share this machine's "
        "cores, so no speed-up is possible here: the ratio is the cost of the "
        "multi-worker path (collective all-reduce over gRPC on 127.0.0.1, every "
        "worker reading the whole split).\n\n" + table
    )
    return {
        "title": "Multi-worker training on one machine",
        "markdown": markdown,
        "medians": medians,
        "runs": measured,
        "quick": quick,
    }
