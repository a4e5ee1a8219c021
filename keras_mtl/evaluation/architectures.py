"""Paired comparisons of architectures, as the papers that proposed them ran.

Each setting trains the same data with the same seed (paired); the
difference between two settings is taken seed by seed, and reported with a
95 % t interval over the seeds (`paired_difference`).

- `correlation_experiment`: shared bottom (`mlp`) against MMoE on the MMoE
  paper's synthetic tasks at several task correlations (its Figure 4).
- `esmm_experiment`: ESMM's pCVR against a conversion model trained on
  clicked rows only, both scored over all test impressions against the
  funnel's known truth.
- `paired_runs`: any settings (`--set` overrides) on one config, e.g. PLE
  against MMoE on Adult.

Example:

```python
runs = keras_mtl.evaluation.correlation_experiment([1.0, 0.5], seeds=[0, 1, 2])
runs.differences()   # {1.0: {...}, 0.5: {...}}: shared-bottom loss - MMoE loss
```
"""

import dataclasses
import time

import keras
import numpy as np

from keras_mtl.config import load_config
from keras_mtl.data import load_datasets, repeat_epochs
from keras_mtl.evaluation.paired import paired_difference
from keras_mtl.models import build_model, build_single_task_model, serving_model


def train_one(config, seed, task=None):
    """Trains `config` with `train.seed = seed`; returns `(model, datasets)`.

    With `task` (a name), the single-task baseline model of that task is
    trained on its labels alone instead of the two-head model.
    """
    config = config.replace([f"train.seed={seed}"])
    keras.utils.set_random_seed(seed)
    datasets = load_datasets(config)
    train = datasets.train
    if task is None:
        model = build_model(config, datasets.features)
    else:
        model = build_single_task_model(config, task, datasets.features)
        train = train.map(lambda x, y: (x, {task: y[task]}))
    batches, steps = repeat_epochs(train)
    model.fit(batches, steps_per_epoch=steps, epochs=config.train.epochs, verbose=0)
    return model, datasets


@dataclasses.dataclass
class PairedRuns:
    """Scores of settings x seeds: `scores[setting][seed] = {metric: value}`."""

    scores: dict
    seconds: float

    def values(self, setting, metric):
        return [score[metric] for _, score in sorted(self.scores[setting].items())]

    def difference(self, first, second, metric):
        """`paired_difference` of `metric`, `second` minus `first`."""
        return paired_difference(
            self.values(first, metric), self.values(second, metric)
        )


def paired_runs(config, settings, seeds, score):
    """Trains every setting with every seed on the same data.

    Args:
        config: The base `Config`.
        settings: Setting name -> list of `section.key=value` overrides.
        seeds: The `train.seed`s.
        score: `score(model, datasets, config)` -> dict of metric -> float.

    Returns:
        A `PairedRuns`.
    """
    start = time.perf_counter()
    scores = {name: {} for name in settings}
    for seed in seeds:
        for name, overrides in settings.items():
            run_config = config.replace(list(overrides))
            model, datasets = train_one(run_config, seed)
            scores[name][seed] = score(model, datasets, run_config)
    return PairedRuns(scores, time.perf_counter() - start)


def split_test_metrics(model, datasets, config):
    """The test split's per-task losses and metrics, `<task>_<metric>`."""
    del config
    logs = model.evaluate(datasets.test, verbose=0, return_dict=True)
    return {key: float(value) for key, value in logs.items()}


def synthetic_dataset(correlation, seed):
    """The `mmoe_synthetic` config name of a correlation and a data seed."""
    return f"mmoe_synthetic/correlation_{correlation}" + (
        f"_seed_{seed}" if seed else ""
    )


def _summed_task_loss(model, datasets, config):
    logs = split_test_metrics(model, datasets, config)
    return {"loss": sum(logs[f"{task.name}_loss"] for task in config.tasks)}


def correlation_experiment(
    correlations=(1.0, 0.9, 0.5), seeds=(0, 1, 2), trunks=None, overrides=()
):
    """Shared bottom against MMoE on `mmoe_synthetic` at each correlation.

    Seed s trains every trunk on the dataset `correlation_<p>_seed_<s>`
    (new task weights and rows per seed, as the paper repeats its runs) with
    `train.seed = s`. The score is the test loss summed over the two tasks
    (mean squared error of the standardised targets).

    Args:
        correlations: Task correlations (configs of `mmoe_synthetic`).
        seeds: Seeds, 0 to 4.
        trunks: Setting name -> overrides; default `mlp` (113 units, about
            MMoE's parameter count, as in the paper) and `mmoe` (the preset).
        overrides: Overrides for every run (`data.data_dir`, budget).

    Returns:
        `{correlation: PairedRuns}`.
    """
    trunks = trunks or {
        "mlp": ["model.trunk=mlp", "model.width=113", "model.depth=1"],
        "mmoe": ["model.trunk=mmoe"],
    }
    results = {}
    for correlation in correlations:
        start = time.perf_counter()
        scores = {name: {} for name in trunks}
        for seed in seeds:
            dataset = synthetic_dataset(correlation, seed)
            base = load_config(
                "mmoe_synthetic", [*overrides, f"data.dataset={dataset}"]
            )
            for name, trunk in trunks.items():
                config = base.replace(list(trunk))
                model, datasets = train_one(config, seed)
                scores[name][seed] = _summed_task_loss(model, datasets, config)
        results[correlation] = PairedRuns(scores, time.perf_counter() - start)
    return results


def _truth(config):
    """The test split's features and known truth, in the pipeline's order."""
    import tensorflow_datasets as tfds

    from keras_mtl.config import resolve_path

    data_dir = config.data.data_dir
    builder = tfds.builder(
        config.data.dataset, data_dir=str(resolve_path(data_dir)) if data_dir else None
    )
    builder.download_and_prepare()
    split = builder.as_dataset(split=config.data.test_split, batch_size=-1)
    return tfds.as_numpy(split)


def _against_truth(p_cvr, truth):
    """pCVR over all impressions against the counterfactual outcome and p."""
    p = np.clip(np.reshape(p_cvr, -1).astype(float), 1e-7, 1 - 1e-7)
    outcome = truth["conversion_if_clicked"].astype(float)
    auc = keras.metrics.AUC(num_thresholds=2000)
    auc.update_state(outcome, p)
    true_cvr = truth["true_cvr"].astype(float)
    return {
        "log_loss": float(
            -np.mean(outcome * np.log(p) + (1 - outcome) * np.log(1 - p))
        ),
        "auc": float(auc.result()),
        "mae_true_cvr": float(np.mean(np.abs(p - true_cvr))),
    }


def esmm_experiment(seeds=(0, 1, 2), overrides=()):
    """ESMM's pCVR against a clicked-rows-only conversion model.

    Seed s uses the `funnel` dataset of seed s (`default` for 0). ESMM is
    the `funnel_esmm` preset; the baseline is its single-task conversion
    model (the same Trunk and head) whose label is the conversion where
    there was a click and missing elsewhere
    (`conversion_given_click_label`). Both predict p(conversion | click)
    for every test impression, scored against the counterfactual outcome
    (log-loss, AUC) and the true probability (mean absolute error).

    Returns:
        A `PairedRuns` with settings `clicked_only` and `esmm`.
    """
    start = time.perf_counter()
    scores = {"clicked_only": {}, "esmm": {}}
    for seed in seeds:
        dataset = "funnel" if seed == 0 else f"funnel/seed_{seed}"
        config = load_config("funnel_esmm", [*overrides, f"data.dataset={dataset}"])
        truth = _truth(config)
        inputs = {config.data.feature: truth["features"]}
        model, _ = train_one(config, seed)
        conditional = serving_model(model).predict(inputs, verbose=0, batch_size=1024)
        name = f"{config.tasks[1].name}_given_{config.tasks[0].name}"
        scores["esmm"][seed] = _against_truth(conditional[name], truth)
        baseline = config.replace(["tasks.1.label=conversion_given_click_label"])
        model, _ = train_one(baseline, seed, task=baseline.tasks[1].name)
        prediction = model.predict(inputs, verbose=0, batch_size=1024)[
            baseline.tasks[1].name
        ]
        scores["clicked_only"][seed] = _against_truth(prediction, truth)
    return PairedRuns(scores, time.perf_counter() - start)
