"""Training step time of each loss weighting, relative to `static`.

    python benchmarks/run_all.py weighting [--quick]

One model per method, all the shapes preset's CNN (Input 32x32x3, Trunk of
three conv stages, two heads) built from the same seed, trained on the same
synthetic batch of 128 images repeated (so the input pipeline costs nothing).
Each timing is one `model.fit` of `steps` steps; the methods are timed in turn
(interleaved, so that a noisy neighbour slows them all alike), the order
rotating from one round to the next so that no method always goes first, and
the medians compared.

Targets: `uncertainty`, `dwa`, `rlw`, `famo` within 5% of `static`;
`gradnorm` and `pcgrad` (per-task backward passes) at most 2.2x.
"""

import statistics

import harness

METHODS = ("static", "uncertainty", "dwa", "rlw", "gradnorm", "pcgrad", "famo")
TARGETS = {
    "uncertainty": 1.05,
    "dwa": 1.05,
    "rlw": 1.05,
    "famo": 1.05,
    "gradnorm": 2.2,
    "pcgrad": 2.2,
}
BATCH = 128


def _models_and_data():
    import keras
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
    models = {}
    for method in METHODS:
        keras.utils.set_random_seed(0)
        models[method] = keras_mtl.build_model(
            config.replace([f"weighting.method={method}"])
        )
    return models, data


def rotated_times(functions, rounds):
    """Median times over `rounds` interleaved rounds, each in a rotated order."""
    names = list(functions)
    for function in functions.values():
        function()  # warm up: trace and build
    samples = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        order = names[shift:] + names[:shift]
        once = harness.interleaved_times(
            {name: functions[name] for name in order}, repeats=1, warmup=0
        )
        for name, seconds in once.items():
            samples[name].append(seconds)
    return {name: statistics.median(values) for name, values in samples.items()}


def run(quick=False):
    steps, repeats = (10, len(METHODS)) if quick else (40, 2 * len(METHODS))
    models, data = _models_and_data()

    def timed(model):
        return lambda: model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)

    times = rotated_times(
        {method: timed(model) for method, model in models.items()}, repeats
    )
    step_ms = {method: 1000 * seconds / steps for method, seconds in times.items()}
    ratios = {method: step_ms[method] / step_ms["static"] for method in METHODS}
    rows = []
    for method in METHODS:
        target = TARGETS.get(method)
        verdict = (
            "" if target is None else ("yes" if ratios[method] <= target else "NO")
        )
        rows.append(
            [
                f"`{method}`",
                f"{step_ms[method]:.1f}",
                f"{ratios[method]:.3f}",
                "baseline" if target is None else f"<= {target}",
                verdict,
            ]
        )
    markdown = (
        f"Median over {repeats} interleaved rounds (rotating order) of {steps} "
        "training steps, "
        f"batch {BATCH}, the shapes CNN{' (--quick)' if quick else ''}.\n\n"
        + harness.markdown_table(
            ["method", "ms / step", "x static", "target", "met"], rows
        )
    )
    return {
        "title": "Loss weighting: step time relative to static",
        "markdown": markdown,
        "step_ms": step_ms,
        "ratios": ratios,
        "steps": steps,
        "repeats": repeats,
        "quick": quick,
    }


if __name__ == "__main__":
    import sys

    print(run(quick="--quick" in sys.argv)["markdown"])
