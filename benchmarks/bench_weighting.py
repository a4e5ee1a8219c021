"""Training step time of each loss weighting, relative to `static`.

    python benchmarks/run_all.py weighting [--quick]

One model per method, all the shapes preset's CNN (Input 32x32x3, Trunk of
three conv stages, two heads) built from the same seed, trained on the same
synthetic batch of 128 images repeated (so the input pipeline costs nothing).
Each timing is one `model.fit` of `steps` steps; the methods are timed in turn
(static, uncertainty, ..., static, uncertainty, ...) and the medians compared,
so that a noisy neighbour slows them all alike.

Targets: `uncertainty`, `dwa`, `rlw`, `famo` within 5% of `static`;
`gradnorm` and `pcgrad` (per-task backward passes) at most 2.2x.
"""

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


def run(quick=False):
    steps, repeats = (10, 3) if quick else (50, 7)
    models, data = _models_and_data()

    def timed(model):
        return lambda: model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)

    times = harness.interleaved_times(
        {method: timed(model) for method, model in models.items()},
        repeats=repeats,
        warmup=1,
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
        f"Median over {repeats} interleaved repeats of {steps} training steps, "
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
