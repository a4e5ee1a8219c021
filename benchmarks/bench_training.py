"""Training overhead: `keras_mtl.train` against the same network in plain Keras.

Both train the same layers with the same optimizer, tf.data pipeline and batch
size, in one process, interleaved. "plain" fits with no callbacks; "plain +
callbacks" adds the Keras callbacks `train` uses (BackupAndRestore,
ModelCheckpoint, TensorBoard, CSVLogger). Steps per second count the training
steps alone; the time spent at the end of each epoch (checkpoints, logs) is
reported beside it in milliseconds, since it does not grow with the epoch and
dominates only very short epochs. Goal: keras-mtl / plain >= 0.98.

A second table times `keras_mtl.train` with `train.steps_per_execution` 1, 8
and "auto" against the same plain `fit` (one step per call, Keras' default),
in the same interleaved rounds, and checks that the three give the same
training losses.
"""

import statistics
import tempfile

import keras

import keras_mtl

import harness
import workloads

STEPS_PER_EXECUTION = {"keras-mtl": 1, "keras-mtl spe=8": 8, "keras-mtl auto": "auto"}
# "auto" is the default of train.steps_per_execution.


def _runs(config, datasets):
    def ours(steps_per_execution):
        def train():
            timer = workloads.EpochTimer()  # after train's own callbacks
            value = (
                f'"{steps_per_execution}"'
                if steps_per_execution == "auto"
                else steps_per_execution
            )
            run_config = config.replace([f"train.steps_per_execution={value}"])
            # Fresh datasets: a reused one shuffles each iteration anew, and
            # the losses of the three runs are compared.
            fresh = keras_mtl.load_datasets(run_config)
            _, history, _ = keras_mtl.train(
                run_config, datasets=fresh, callbacks=[timer], verbose=0
            )
            timer.losses = history.history["loss"]
            return timer

        return train

    def plain(with_callbacks):
        def fit():
            keras.utils.set_random_seed(config.train.seed)
            model = workloads.plain_model(config, datasets.features)
            timer = workloads.EpochTimer()
            callbacks = (
                workloads.standard_callbacks(tempfile.mkdtemp())
                if with_callbacks
                else []
            )
            callbacks.append(timer)  # last, so it times the others' epoch-end work
            model.fit(
                datasets.train,
                validation_data=datasets.validation,
                epochs=config.train.epochs,
                callbacks=callbacks,
                verbose=0,
                shuffle=False,
            )
            return timer

        return fit

    runs = {name: ours(value) for name, value in STEPS_PER_EXECUTION.items()}
    return {**runs, "plain": plain(False), "plain + callbacks": plain(True)}


def run(quick=False):
    repeats = 1 if quick else 3
    configs = workloads.workload_configs(
        epochs=2 if quick else 4, mlp_epochs=None if quick else 12
    )
    rows, spe_rows, results = [], [], {}
    for label, config in configs.items():
        datasets = keras_mtl.load_datasets(config)
        steps = workloads.steps_per_epoch(datasets.train)
        runs = _runs(config, datasets)
        samples = {
            name: {"steps_per_second": [], "end_ms": [], "epoch_s": []} for name in runs
        }
        losses = {}
        for _ in range(repeats):
            for name, fit in runs.items():  # interleaved
                timer = fit()
                losses[name] = getattr(timer, "losses", None)
                samples[name]["steps_per_second"].append(
                    steps / workloads.steady(timer, "train")
                )
                samples[name]["end_ms"].append(1000 * workloads.steady(timer, "end"))
                samples[name]["epoch_s"].append(workloads.steady(timer, "epoch"))
        medians = {
            name: {key: statistics.median(values) for key, values in measures.items()}
            for name, measures in samples.items()
        }
        results[label] = {
            "steps_per_epoch": steps,
            "medians": medians,
            "samples": samples,
            "loss_difference": _loss_difference(losses),
        }
        spe_rows.append(_steps_per_execution_row(label, medians, losses))
        ours, plain, plain_cb = (
            medians[n] for n in ("keras-mtl", "plain", "plain + callbacks")
        )
        rows.append(
            [
                label,
                steps,
                f"{ours['steps_per_second']:.1f}",
                f"{plain['steps_per_second']:.1f}",
                f"**{ours['steps_per_second'] / plain['steps_per_second']:.3f}**",
                f"{ours['end_ms']:.0f} / {plain['end_ms']:.0f} / {plain_cb['end_ms']:.0f}",
                f"{plain['epoch_s'] / ours['epoch_s']:.3f}",
                f"{plain_cb['epoch_s'] / ours['epoch_s']:.3f}",
            ]
        )
    table = harness.markdown_table(
        [
            "workload",
            "steps/epoch",
            "keras-mtl steps/s",
            "plain steps/s",
            "keras-mtl / plain (steps)",
            "epoch-end ms: keras-mtl / plain / plain + callbacks",
            "whole epoch: keras-mtl / plain",
            "whole epoch: keras-mtl / plain + callbacks",
        ],
        rows,
    )
    note = (
        f"Medians over {repeats} interleaved runs of the steady-state epochs (the "
        "first epoch, which traces, is left out; 12 epochs for adult, 4 for "
        "shapes unless --quick). Whole-epoch ratios are speed "
        "ratios (plain time / keras-mtl time) and include validation and the "
        "epoch-end work. Goal: keras-mtl / plain >= 0.98."
    )
    spe_table = harness.markdown_table(
        [
            "workload",
            "whole epoch / plain: spe 1",
            "spe 8",
            "spe auto (the default)",
            "max |loss difference| spe 8, auto vs 1",
        ],
        spe_rows,
    )
    return {
        "title": "Training overhead against plain Keras",
        "markdown": f"{table}\n\n{note}\n\n{spe_table}\n\nSteps per execution: "
        "keras_mtl.train with train.steps_per_execution 1, 8 and auto (whole-epoch "
        "speed over a default plain fit, one step per call, same rounds). Goal: "
        "keras-mtl with its default / plain >= 0.95; moonshot > 1.0 with the "
        "same losses.",
        "results": results,
    }


def _loss_difference(losses):
    reference = losses["keras-mtl"]
    return max(
        abs(a - b)
        for name in STEPS_PER_EXECUTION
        for a, b in zip(losses[name], reference, strict=True)
    )


def _steps_per_execution_row(label, medians, losses):
    plain = medians["plain"]["epoch_s"]
    return [
        label,
        *(
            f"**{plain / medians[name]['epoch_s']:.3f}**"
            for name in STEPS_PER_EXECUTION
        ),
        f"{_loss_difference(losses):.1e}",
    ]
