"""`compare_weightings`: weighting methods against equal weights and single-task
models, over paired seeds.

Each method trains the same config (same data, model, budget and seeds) with
only `weighting.method` changed, is evaluated on both held-out splits
(`evaluation_report`) and compared with the single-task baselines
(`train_baselines`, cached) and with the reference method (equal static
weights) seed by seed (`keras_mtl.evaluation.paired_table`). Seed s gives
every run the same split (with `resample_split`, `data.seed = s`), the same
initial Trunk and the same shuffle order: every run gets a fresh input
pipeline (a reused one goes on with its shuffle order); multi-threaded CPU
kernels still make two runs of one config differ slightly. Each run lives in
its own directory, `<train.run_dir>/<name>/weighting/<method>-seed<seed>/<name>/`,
with its `history.json` and `report.json` (its metrics).

Example:

```python
comparison = keras_mtl.compare_weightings(config, ["static", "uncertainty", "famo"])
print(comparison.to_markdown())   # per-task metrics, final weights, delta-m
comparison.runs["famo"][0].history.history["fine_weight"]
```
"""

import dataclasses
import json
import logging
import time

from keras_mtl.config import weighting_methods
from keras_mtl.data import load_datasets
from keras_mtl.distribute import make_strategy
from keras_mtl.evaluation.baselines import Baselines, train_baselines
from keras_mtl.evaluation.paired_table import WeightingComparison
from keras_mtl.evaluation.report import evaluation_report
from keras_mtl.training import run_dir_for, train

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class MethodRun:
    """One method trained with one seed.

    Attributes:
        method: The `weighting.method`.
        seed: The `train.seed`.
        model: The trained model.
        history: Its `keras.callbacks.History`.
        report: Its `EvaluationReport` (validation and test metrics).
        seconds: Wall-clock seconds of `train` (fit, validation, callbacks).
        run_dir: The run's directory.
    """

    method: str
    seed: int
    model: object
    history: object
    report: object
    seconds: float
    run_dir: object


GRADIENT_BOOSTING = "gradient-boosted trees"

# The training protocol of `keras-mtl compare` and the quality benchmark: each
# run trains until early stopping on a validation loss that the loss weights
# do not scale (best weights restored), the learning rate halved after an
# epoch without progress; `train.epochs` is the most it may train.
PROTOCOL_OVERRIDES = (
    "train.early_stopping_patience=3",
    "train.monitor=val_unweighted_loss",
    "train.lr_schedule=plateau",
    "train.lr_plateau_patience=1",
    "train.lr_plateau_factor=0.5",
)


def _check_methods(methods):
    known = weighting_methods.names()
    methods = list(known if methods is None else methods)
    unknown = [method for method in methods if method not in known]
    if unknown or not methods or len(set(methods)) != len(methods):
        raise ValueError(
            "Expected distinct weighting methods from "
            f"{list(known)}. Received: methods={methods}"
        )
    return methods


def seed_overrides(seed, resample_split=False):
    """The overrides that make seed `seed` one paired replicate.

    `train.seed` sets the initialisation and the shuffle order; with
    `resample_split`, `data.seed` too: a new train / validation / test split
    (CSV data) and a new draw of the `data.label_fraction` rows per seed,
    the same for every setting of that seed.
    """
    overrides = [f"train.seed={seed}"]
    if resample_split:
        overrides.append(f"data.seed={seed}")
    return overrides


def _run_method(config, method, seed, strategy, callbacks, verbose, resample_split):
    """Trains and evaluates `config` with `method` and `seed`, in its own
    run directory; returns a `MethodRun`."""
    directory = run_dir_for(config) / "weighting" / f"{method}-seed{seed}"
    run_config = config.replace(
        [
            f"weighting.method={method}",
            *seed_overrides(seed, resample_split),
            f"train.run_dir={json.dumps(str(directory))}",
        ]
    )
    # A fresh pipeline: its shuffle order comes from run_config alone.
    datasets = load_datasets(run_config, replicas=strategy.num_replicas_in_sync)
    start = time.perf_counter()
    model, history, run_dir = train(
        run_config,
        datasets=datasets,
        strategy=strategy,
        callbacks=callbacks,
        verbose=verbose,
    )
    seconds = time.perf_counter() - start
    report = evaluation_report(model, datasets, run_config)
    # Beside history.json: a partial comparison can be read back from disk.
    (run_dir / "report.json").write_text(
        json.dumps({"seconds": seconds, "report": report.to_dict()}, indent=1)
    )
    return MethodRun(method, seed, model, history, report, seconds, run_dir)


def paired_baselines(config, seeds, *, resample_split=False, strategy=None, verbose=0):
    """The single-task `Baselines` of every seed, on that seed's split."""
    if not resample_split:
        return train_baselines(config, seeds, strategy=strategy, verbose=verbose)
    records = {task.name: {} for task in config.tasks}
    for seed in seeds:
        one = train_baselines(
            config.replace([f"data.seed={seed}"]),
            [seed],
            strategy=strategy,
            verbose=verbose,
        )
        for name, by_seed in one.records.items():
            records[name].update(by_seed)
    return Baselines(config.tasks, records)


def gradient_boosting_runs(config, seeds, resample_split=False):
    """`{seed: scores}` of `gradient_boosting_baseline` on each seed's split."""
    from keras_mtl.evaluation.gradient_boosting import gradient_boosting_baseline

    return {
        seed: gradient_boosting_baseline(
            config.replace(seed_overrides(seed, resample_split)), seed
        )
        for seed in seeds
    }


def compare_weightings(
    config,
    methods=None,
    *,
    seeds=None,
    strategy=None,
    baselines=None,
    split="test",
    callbacks=(),
    verbose=0,
    reference="static",
    resample_split=False,
    gradient_boosting="auto",
):
    """Trains `config` once per weighting method and seed, and compares them.

    Everything but `weighting.method` (and the seed) stays as `config` has
    it, so the methods see the same data, model and budget; the single-task
    baselines are trained once per seed with the same budget, or read from
    their cache. Seed s is a paired replicate: every method and baseline of
    seed s gets the same split, initial Trunk and shuffle order, and the
    table reports paired differences with 95 % t intervals.

    For a protocol that tells settings apart, train each run until early
    stopping on a validation objective that the weights do not scale
    (`train.early_stopping_patience`, `train.monitor =
    "val_unweighted_loss"`, a large `train.epochs`), with a learning-rate
    schedule (`train.lr_schedule`), over 5 or more seeds; see
    docs/evaluation.md.

    Args:
        config: A `keras_mtl.Config`; its `[weighting]` settings apply to
            every method that uses them.
        methods: `weighting.method` values, in table order; default: every
            registered method.
        seeds: Training seeds; default `[config.train.seed]`.
        strategy: A `tf.distribute.Strategy`; `make_strategy(config.train)`
            by default.
        baselines: A `keras_mtl.Baselines` for the same config and seeds;
            trained (or loaded from the cache) by default.
        split: `"test"` or `"validation"`: the split of the table.
        callbacks: More Keras callbacks for every run.
        verbose: `model.fit` verbosity.
        reference: The method every other is compared with, seed by seed
            (default `"static"`, the tasks' weights; equal weights unless the
            config sets others). Not compared when not in `methods`.
        resample_split: Seed s also sets `data.seed` (a new split and label
            draw per seed, the same for every setting of the seed).
        gradient_boosting: Add a row of scikit-learn gradient-boosted trees
            per task (`keras_mtl.evaluation.gradient_boosting`): `True`,
            `False`, or `"auto"` (for CSV data).

    Returns:
        A `WeightingComparison`.
    """
    methods = _check_methods(methods)
    if split not in ("test", "validation"):
        raise ValueError(
            f"Expected split 'test' or 'validation'. Received: split={split!r}"
        )
    seeds = [config.train.seed] if seeds is None else [int(seed) for seed in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(
            f"Expected distinct seeds >= 0, one or more. Received: seeds={seeds}"
        )
    if split == "validation" and not config.data.validation_fraction:
        raise ValueError(
            "split='validation' needs a validation split; set "
            "data.validation_fraction > 0. Received: data.validation_fraction="
            f"{config.data.validation_fraction}"
        )
    if gradient_boosting not in (True, False, "auto"):
        raise ValueError(
            "Expected gradient_boosting True, False or 'auto'. Received: "
            f"gradient_boosting={gradient_boosting!r}"
        )
    if gradient_boosting is True and config.data.source != "csv":
        raise ValueError(
            "gradient_boosting=True needs tabular data (data.source='csv'). "
            f"Received: data.source={config.data.source!r}"
        )
    strategy = strategy or make_strategy(config.train)
    if baselines is None:
        baselines = paired_baselines(
            config,
            seeds,
            resample_split=resample_split,
            strategy=strategy,
            verbose=verbose,
        )
    runs = {
        method: [
            _run_method(
                config, method, seed, strategy, callbacks, verbose, resample_split
            )
            for seed in seeds
        ]
        for method in methods
    }
    extra = {}
    if gradient_boosting is True or (
        gradient_boosting == "auto" and config.data.source == "csv"
    ):
        extra[GRADIENT_BOOSTING] = gradient_boosting_runs(config, seeds, resample_split)
    comparison = WeightingComparison(
        config.tasks,
        runs,
        baselines,
        split,
        reference=reference,
        extra=extra,
        max_epochs=config.train.epochs,
    )
    note = comparison.epoch_cap_note()
    if note:
        logger.warning(note.replace("**", ""))
    return comparison
