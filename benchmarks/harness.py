"""What every benchmark shares: the machine, repeats, medians, result files.

A benchmark is `benchmarks/bench_<name>.py` with a `run(quick=False)` function
that returns a dict with at least `"title"` and `"markdown"` (its section of
the summary: a table with ratios and absolute numbers). `make bench` (see
`run_all.py`) runs each in its own process and writes
`benchmarks/results/<name>.json` and `benchmarks/results/SUMMARY.md`.

Speed figures are ratios measured side by side in one process and run, with
medians over repeats, because these machines are shared and noisy.
"""

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine():
    """The CPU model, core count, memory, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    versions = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "keras_tuner", "tensorflow_datasets", "numpy"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        versions[name] = getattr(module, "__version__", "?")
    gpus = []
    if "tensorflow" in sys.modules:
        gpus = [
            d.name
            for d in sys.modules["tensorflow"].config.list_physical_devices("GPU")
        ]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "gpus": gpus,
        "platform": platform.platform(),
        "versions": versions,
    }


def median_time(function, repeats=5, warmup=1):
    """Median wall time of `function()` in seconds over `repeats` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(functions, repeats=5, warmup=1):
    """Median times of several functions timed in turn (A B C A B C ...).

    Interleaving spreads a noisy neighbour evenly over the contenders, so
    their ratio is fairer than timing each in one block.
    """
    for function in functions.values():
        for _ in range(warmup):
            function()
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def markdown_table(headers, rows):
    from keras_mtl.markdown import table_lines

    return "\n".join(table_lines(headers, rows))


def write_result(name, result):
    """Writes `results/<name>.json` with the machine description added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "machine": machine(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        **result,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1, default=str))
    return record


def first_element_cpu_ms(dataset, passes=10):
    """Median CPU milliseconds to make an iterator of `dataset` and take its
    first element (after one warm-up): the fixed cost Keras pays at the
    start of every epoch, where it makes a new iterator."""
    samples = []
    for _ in range(passes + 1):
        start = time.process_time()
        next(iter(dataset))
        samples.append(time.process_time() - start)
    return 1000 * statistics.median(samples[1:])
