"""Training step time of each loss weighting, relative to `static`.

    python benchmarks/run_all.py weighting [--quick]

Two workloads: the shapes preset's CNN (Input 32x32x3, Trunk of three conv
stages, two heads) on a synthetic batch of 128 images, and the adult preset's
MLP on one batch of 128 real Adult rows. Per workload, one model per method,
built from the same seed, trained on its batch repeated (so the input
pipeline costs nothing), with the default `train.steps_per_execution`.
Each timing is one `model.fit` of `steps` steps, in wall and CPU time; the
methods are timed in turn (interleaved, so that a noisy neighbour slows them all alike), the order
rotating from one round to the next so that no method always goes first, and
the medians compared.

Every registered method is timed (`keras_mtl.config.weighting_methods`), and
`nash_mtl` once more with `update_every = 10`. Targets: the loss-based
methods within 5% of `static`; the gradient methods (per-task backward
passes) at most 2.2x; Nash-MTL updating its weights every 10 steps at most
1.3x.
"""

import statistics

from keras_mtl.config import weighting_methods

import harness

# Methods that take each task's gradient on the shared blocks.
GRADIENT_METHODS = {
    "gradnorm",
    "pcgrad",
    "db_mtl",
    "imtl",
    "aligned_mtl",
    "fairgrad",
    "nash_mtl",
    "cagrad",
}
NASH_EVERY_10 = "nash_mtl (update_every=10)"
BATCH = 128


def _settings():
    """Setting name -> config overrides, `static` first."""
    methods = [spec.name for spec in weighting_methods.specs()]
    settings = {method: [f"weighting.method={method}"] for method in methods}
    if "nash_mtl" in methods:
        settings[NASH_EVERY_10] = [
            "weighting.method=nash_mtl",
            "weighting.nash_mtl_update_every=10",
        ]
    return settings


def _target(setting):
    if setting == "static":
        return None
    if setting == NASH_EVERY_10:
        return 1.3
    return 2.2 if setting in GRADIENT_METHODS else 1.05


def _models(config, features=None):
    import keras

    import keras_mtl

    models = {}
    for setting, overrides in _settings().items():
        keras.utils.set_random_seed(0)
        models[setting] = keras_mtl.build_model(config.replace(overrides), features)
    return models


def _adult_models_and_data():
    import tensorflow as tf

    import keras_mtl

    import workloads

    config = keras_mtl.load_config(
        "adult",
        [
            f"data.path={workloads.adult_csv()}",
            f"train.batch_size={BATCH}",
            "data.max_examples=4096",
        ],
    )
    datasets = keras_mtl.load_datasets(config)
    batch = next(iter(datasets.train))
    data = tf.data.Dataset.from_tensors(batch).repeat()
    return _models(config, datasets.features), data


def _models_and_data():
    import numpy as np
    import tensorflow as tf

    import keras_mtl

    config = keras_mtl.load_config("shapes", [f"train.batch_size={BATCH}"])
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (BATCH, 32, 32, 3)).astype("float32")
    labels = {
        "coarse": rng.integers(0, 4, BATCH).astype("int32"),
        "fine": rng.integers(0, 12, BATCH).astype("int32"),
    }
    data = tf.data.Dataset.from_tensors(({"image": images}, labels)).repeat()
    return _models(config), data


def rotated_times(functions, rounds):
    """Median wall and CPU seconds over `rounds` interleaved rounds, each in
    a rotated order: `({name: wall}, {name: cpu})`.

    CPU time is the process's (`time.process_time`, both cores): on this
    shared 2-core machine the wall time of the same step flips between two
    levels (measured: the shapes step at 29-30 ms or 53 ms while its CPU time
    stayed 54-58 ms), as the second core comes and goes, so the CPU ratio is
    the steadier measure of a method's extra work.
    """
    import time

    names = list(functions)
    for function in functions.values():
        function()  # warm up: trace and build
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            start, start_cpu = time.perf_counter(), time.process_time()
            functions[name]()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return (
        {name: statistics.median(values) for name, values in wall.items()},
        {name: statistics.median(values) for name, values in cpu.items()},
    )


WORKLOADS = {"shapes (cnn)": _models_and_data, "adult (mlp)": _adult_models_and_data}


def _measure(make, quick):
    models, data = make()
    # Multiples of 16, the default steps per call ("auto"), so that every
    # timed `fit` runs exactly `steps` steps; adult's take ~1-2 ms: more.
    steps = 16 if quick else 48
    if make is _adult_models_and_data:
        steps *= 8
    repeats = 3 if quick else 10

    def timed(model):
        return lambda: model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)

    wall, cpu = rotated_times(
        {method: timed(model) for method, model in models.items()}, repeats
    )
    result = {"steps": steps, "repeats": repeats}
    for key, times in (("wall", wall), ("cpu", cpu)):
        step_ms = {method: 1000 * seconds / steps for method, seconds in times.items()}
        result[f"{key}_step_ms"] = step_ms
        result[f"{key}_ratios"] = {
            method: step_ms[method] / step_ms["static"] for method in models
        }
    return result


def run(quick=False):
    rows, results = [], {}
    for workload, make in WORKLOADS.items():
        result = results[workload] = _measure(make, quick)
        for method, ratio in result["cpu_ratios"].items():
            target = _target(method)
            verdict = "" if target is None else ("yes" if ratio <= target else "NO")
            rows.append(
                [
                    workload,
                    f"`{method}`",
                    f"{result['cpu_step_ms'][method]:.2f}",
                    f"{ratio:.3f}",
                    f"{result['wall_step_ms'][method]:.2f}",
                    f"{result['wall_ratios'][method]:.3f}",
                    "baseline" if target is None else f"<= {target}",
                    verdict,
                ]
            )
    counts = "; ".join(
        f"{workload}: {result['repeats']} rounds of {result['steps']} steps"
        for workload, result in results.items()
    )
    markdown = (
        "Median over interleaved rounds (rotating order) of training steps "
        f"({counts}), batch {BATCH}, the default train.steps_per_execution"
        f"{' (--quick)' if quick else ''}. Targets are judged on CPU time "
        "(both cores, `time.process_time`): the wall time of one step on this "
        "shared machine flips between two levels as the second core comes and "
        "goes, so the wall ratios are shown but are noisier.\n\n"
        + harness.markdown_table(
            [
                "model",
                "method",
                "CPU ms / step",
                "CPU x static",
                "wall ms / step",
                "wall x static",
                "target",
                "met",
            ],
            rows,
        )
    )
    return {
        "title": "Loss weighting: step time relative to static",
        "markdown": markdown,
        "results": results,
        "quick": quick,
    }


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
