"""Single-task baselines: each task trained alone with the same budget, cached.

A baseline is `build_single_task_model` (the same Trunk with one head) trained
as the multi-task model is: the same data and splits, epochs, global batch,
optimizer and learning rate, under the same strategy. Each (task, seed) is
trained once and cached as JSON:

    <train.run_dir>/<name>/baselines/<task>-<key>-seed<seed>.json

`key` hashes the config fields that change a baseline: `[data]`, the task
(not its loss weight), `[model]` (not Head 2's wiring) and the training budget.
Changing a loss weight, the other task, the strategy or the replica count
reuses the cache; changing the data, the model or the budget trains anew.

Example:

```python
baselines = keras_mtl.train_baselines(config, seeds=[0, 1, 2])
baselines.metrics("test")    # {"coarse": {"accuracy": ...}, "fine": {...}}
print(baselines.to_markdown())
```
"""

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile

import keras
import tensorflow as tf

from keras_mtl import tasks as task_lib
from keras_mtl.data.features import normalized_targets
from keras_mtl.data.pipeline import repeat_epochs
from keras_mtl.distribute import make_strategy
from keras_mtl.evaluation.delta_m import mean_and_std, mean_metrics
from keras_mtl.evaluation.report import evaluate_predictions
from keras_mtl.fine_tuning import enter_phase, merge_histories, training_phases
from keras_mtl.lr_schedule import schedule_callbacks
from keras_mtl.models.single_task_model import build_single_task_model
from keras_mtl.training import TrainingDivergedError, run_dir_for

logger = logging.getLogger(__name__)

# The [train] fields that change what a baseline learns. The strategy and the
# replica count do not (the tests show 1 and 2 replicas train alike).
BUDGET_FIELDS = (
    "epochs",
    "batch_size",
    "learning_rate",
    "optimizer",
    "mixed_precision",
    "shuffle",
    "early_stopping_patience",
    "monitor",
    "lr_schedule",
    "lr_plateau_patience",
    "lr_plateau_factor",
)


def baseline_fields(config, task):
    """The config fields a task's baseline depends on, as a dict."""
    task = task_lib.find_task(config, task)
    settings = config.to_dict()
    model = dict(settings["model"])
    for key in ("head2_input", "stop_gradient"):
        model.pop(key)
    task_fields = dataclasses.asdict(task)
    task_fields.pop("weight")
    data = dict(settings["data"])
    # Only this task's label fraction changes its baseline: hiding the other
    # task's labels leaves every row of this one (a row goes only when it
    # carries no label at all).
    fraction = data["label_fraction"].get(task.name)
    data["label_fraction"] = {} if fraction is None else {task.name: fraction}
    budget = BUDGET_FIELDS
    if config.train.freeze_epochs:  # keys of runs without phases stay as they were
        budget += ("freeze_epochs", "fine_tune_learning_rate")
    return {
        "data": data,
        "task": task_fields,
        "model": model,
        "train": {key: settings["train"][key] for key in budget},
    }


def baseline_key(config, task):
    """A short hash of `baseline_fields(config, task)`."""
    text = json.dumps(baseline_fields(config, task), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def baseline_path(config, task, seed):
    """Where the cached baseline of `task` and `seed` lives."""
    task = task_lib.find_task(config, task)
    name = f"{task.name}-{baseline_key(config, task)}-seed{seed}.json"
    return run_dir_for(config) / "baselines" / name


class Baselines:
    """The cached single-task baselines of a config, over one or more seeds.

    Args:
        tasks: The `TaskConfig`s, in head order.
        records: `{task: {seed: record}}`; a record holds the task's
            `"validation"` and `"test"` metrics (`{"loss": ..., <metric>: ...}`),
            its training `"history"` and the `"fields"` it was trained with.
    """

    def __init__(self, tasks, records):
        self.tasks = list(tasks)
        self.records = records

    @property
    def seeds(self):
        return sorted(next(iter(self.records.values())))

    def metrics(self, split="test", seed=None):
        """`{task: {metric: value}}`: one seed's, or the mean over all seeds."""
        seeds = self.seeds if seed is None else [seed]
        return mean_metrics(
            {name: runs[s][split] for name, runs in self.records.items()} for s in seeds
        )

    def summary(self):
        """`{task: {split: {metric: {"mean", "std", "values"}}}}` over seeds
        (a split without metrics, such as an empty validation split, is None)."""
        result = {}
        for name, runs in self.records.items():
            result[name] = {}
            for split in ("validation", "test"):
                metrics = runs[self.seeds[0]][split]
                if metrics is None:  # No validation split.
                    result[name][split] = None
                    continue
                result[name][split] = {}
                for metric in metrics:
                    values = [runs[seed][split][metric] for seed in self.seeds]
                    mean, std = mean_and_std(values)
                    result[name][split][metric] = {
                        "mean": mean,
                        "std": std,
                        "values": values,
                    }
        return result

    def at_epoch_cap(self):
        """`{task: (runs, of)}`: how many of each task's baselines trained
        every epoch `train.epochs` allowed (early stopping did not end them),
        out of those whose record says (records without fields are left out)."""
        counts = {}
        for name, runs in self.records.items():
            capped = known = 0
            for seed in self.seeds:
                record = runs[seed]
                cap = (record.get("fields") or {}).get("train", {}).get("epochs")
                if cap is None or "epochs_run" not in record:
                    continue
                known += 1
                capped += record["epochs_run"] >= cap
            counts[name] = (capped, known)
        return counts

    def to_dict(self):
        return {
            "seeds": self.seeds,
            "tasks": self.summary(),
            "at_epoch_cap": {
                name: {"runs": runs, "of": of}
                for name, (runs, of) in self.at_epoch_cap().items()
            },
        }

    def to_markdown(self):
        """One row per task: its headline metric on each split, mean +- std."""
        summary = self.summary()
        lines = [
            f"Single-task baselines, seeds {self.seeds}",
            "",
            "| task | metric | better | validation | test |",
            "|---|---|---|---|---|",
        ]
        for task in self.tasks:
            metric = task_lib.headline_metric(task)
            cells = [
                _format(summary[task.name][split][metric])
                if summary[task.name][split] is not None
                else ""
                for split in ("validation", "test")
            ]
            lines.append(
                f"| {task.name} | {metric} | {task_lib.metric_direction(metric)} | "
                f"{cells[0]} | {cells[1]} |"
            )
        return "\n".join(lines) + "\n"


def _format(stats):
    if stats["std"] is None:
        return f"{stats['mean']:.4f}"
    return f"{stats['mean']:.4f} +- {stats['std']:.4f}"


def _default_seeds(config, seeds):
    seeds = [config.train.seed] if seeds is None else [int(seed) for seed in seeds]
    if not seeds or any(seed < 0 for seed in seeds):
        raise ValueError(
            f"Expected one or more seeds >= 0 for the baselines. Received: {seeds}"
        )
    return seeds


def load_baselines(config, seeds=None):
    """The cached baselines of `config` for `seeds`, or None if any is missing.

    Args:
        config: A `keras_mtl.Config`.
        seeds: Training seeds; default `[config.train.seed]`.

    Returns:
        A `Baselines`, or None when a (task, seed) has not been trained.
    """
    seeds = _default_seeds(config, seeds)
    records = {}
    for task in config.tasks:
        records[task.name] = {}
        for seed in seeds:
            path = baseline_path(config, task, seed)
            if not path.is_file():
                return None
            records[task.name][seed] = json.loads(path.read_text())
    return Baselines(config.tasks, records)


def _monitor_for(monitor, task):
    """`train.monitor` as the single-task model logs it (no task prefix)."""
    prefix = "val_" if monitor.startswith("val_") else ""
    rest = monitor[len(prefix) :]
    if rest.startswith(task.name + "_"):
        return prefix + rest[len(task.name) + 1 :]
    return prefix + "loss"


def _write_atomically(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def train_baseline(config, task, seed, *, datasets, strategy, verbose=0):
    """Trains one task's baseline with one seed; returns its record (not cached)."""
    task = task_lib.find_task(config, task)
    keras.utils.set_random_seed(seed)
    model = build_single_task_model(config, task, datasets.features, strategy=strategy)

    def one_label(inputs, labels, *sample_weights):
        # Rows without the task's label keep their missing value: the masked
        # loss skips them, so the baseline learns from the rows that carry it.
        selected = (inputs, {task.name: labels[task.name]})
        if sample_weights:
            selected += ({task.name: sample_weights[0][task.name]},)
        return selected

    monitor = _monitor_for(config.train.monitor, task)
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        *schedule_callbacks(config.train, monitor),
    ]
    if config.train.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                patience=config.train.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    validation = datasets.validation
    histories = []
    for phase in training_phases(config):  # as keras_mtl.train: freeze_epochs
        if phase.first_epoch:
            scales = normalized_targets(config, datasets.features)
            enter_phase(model, config, phase, scales, tasks=[task])
        batches, steps = repeat_epochs(datasets.train.map(one_label))
        histories.append(
            model.fit(
                batches,
                steps_per_epoch=steps,
                validation_data=None
                if validation is None
                else validation.map(one_label),
                initial_epoch=phase.first_epoch,
                epochs=phase.last_epoch,
                callbacks=callbacks,
                verbose=verbose,
                shuffle=False,  # The pipeline shuffles.
            )
        )
    history = merge_histories(histories)
    predict = tf.function(
        lambda inputs: model(inputs, training=False), reduce_retracing=True
    )
    record = {
        "task": task.name,
        "seed": seed,
        "key": baseline_key(config, task),
        "epochs_run": len(history.epoch),
        "validation": None,
        "test": evaluate_predictions(predict, datasets.test, [task])[task.name],
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "fields": baseline_fields(config, task),
    }
    if validation is not None:
        record["validation"] = evaluate_predictions(predict, validation, [task])[
            task.name
        ]
    for split in ("validation", "test"):
        values = (record[split] or {}).values()
        if not all(math.isfinite(value) for value in values):
            raise TrainingDivergedError(
                f"The {task.name!r} baseline (seed {seed}) diverged: its {split} "
                f"metrics are {record[split]}. Lower train.learning_rate."
            )
    return record


def train_baselines(
    config, seeds=None, *, datasets=None, strategy=None, retrain=False, verbose=0
):
    """Trains (or loads from the cache) every task's baseline for each seed.

    Args:
        config: A `keras_mtl.Config`; its budget is the baselines' budget.
        seeds: Training seeds; default `[config.train.seed]`.
        datasets: A `keras_mtl.Datasets` to train every baseline on. By
            default each baseline that has to be trained gets a fresh one,
            loaded with `train.seed` = its seed: it then sees the batches, in
            the order, that the multi-task run of that seed sees, whatever
            trained before it. One `Datasets` shared by several fits carries
            its shuffle state from one to the next, so a baseline trained on
            a given one also depends on what trained on it before.
        strategy: A `tf.distribute.Strategy`; `make_strategy(config.train)`
            by default.
        retrain: Train again even where a cached baseline exists.
        verbose: `model.fit` verbosity.

    Returns:
        A `Baselines`.

    Example:

    ```python
    baselines = keras_mtl.train_baselines(config, seeds=[0, 1, 2])
    keras_mtl.delta_m(report.test, baselines.metrics("test"), config)
    ```
    """
    from keras_mtl.data import load_datasets

    seeds = _default_seeds(config, seeds)
    records = {}
    for task in config.tasks:
        records[task.name] = {}
        for seed in seeds:
            path = baseline_path(config, task, seed)
            if path.is_file() and not retrain:
                records[task.name][seed] = json.loads(path.read_text())
                continue
            if strategy is None:
                strategy = make_strategy(config.train)
            seed_datasets = datasets
            if seed_datasets is None:
                seed_datasets = load_datasets(
                    config.replace([f"train.seed={seed}"]),
                    replicas=strategy.num_replicas_in_sync,
                )
            logger.info(
                "Training the single-task %r baseline, seed %d", task.name, seed
            )
            record = train_baseline(
                config,
                task,
                seed,
                datasets=seed_datasets,
                strategy=strategy,
                verbose=verbose,
            )
            _write_atomically(path, json.dumps(record, indent=1))
            logger.info("Cached %s", path)
            records[task.name][seed] = record
    return Baselines(config.tasks, records)
