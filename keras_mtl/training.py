"""`train`: one `model.fit` under the configured strategy, with the callbacks a
multi-task run needs.

A run lives in `<train.run_dir>/<name>/`:

| path | written by | holds |
|---|---|---|
| `config.toml` | `train` | the config of the run |
| `backup/` | `MultiWorkerBackupAndRestore` (Keras' `BackupAndRestore`, chief writes, all restore) | the last saved epoch; a rerun resumes from it |
| `checkpoints/best.keras` | `BestModelCheckpoint` (Keras' `ModelCheckpoint`) | the best model by `train.monitor` |
| `logs/` | `keras.callbacks.TensorBoard` | per-task losses, weights, metrics and gradient diagnostics |
| `history.csv`, `history.json` | `keras.callbacks.CSVLogger`, `train` | every epoch's logs |
| `.lock` | `train` (`run_directory.lock_run_dir`) | the pid of the `train` using the directory |

Before the first epoch the run directory must be writable (or creatable), and
no other process may hold its lock: a second `train` on the same directory is
refused with the holder's pid; a killed run's lock does not block its resume.

The backup and the best model are written every `train.backup_every_seconds`
(`keras_mtl.save_policy`), at the end of training, and when training stops on
an exception or SIGTERM; a rerun after a kill resumes after the last write,
and `history.csv` keeps the epochs up to it, each once.

Under `MultiWorkerMirroredStrategy` every worker runs the same callbacks, but
only the chief writes the run directory; the others write into temporary
directories that are removed, and restore the chief's backup.
"""

import csv
import json
import logging
import os
import tomllib
import typing
from pathlib import Path

import keras

from keras_mtl import tasks as task_lib
from keras_mtl.best_checkpoint import BestModelCheckpoint
from keras_mtl.callbacks import (
    EpochTensorBoard,
    LabelledFractions,
    TerminateOnNaN,
    UnweightedLoss,
    epoch_only,
)
from keras_mtl.config import config_from_dict
from keras_mtl.data import load_datasets, repeat_epochs
from keras_mtl.data.features import normalized_targets
from keras_mtl.diagnostics import GradientDiagnostics, diagnostic_batch
from keras_mtl.distribute import describe_strategy, make_strategy
from keras_mtl.fine_tuning import enter_phase, merge_histories, training_phases
from keras_mtl.lr_schedule import schedule_callbacks
from keras_mtl.models import build_model
from keras_mtl.multi_worker import (
    MultiWorkerBackupAndRestore,
    chief_or_scratch_dir,
    is_chief,
)
from keras_mtl.multi_worker.backup import backup_epoch
from keras_mtl.run_directory import check_writable_dir, lock_run_dir, run_dir_for
from keras_mtl.save_policy import save_unsaved, stop_on_sigterm
from keras_mtl.steps_per_execution import with_steps_per_execution

logger = logging.getLogger(__name__)


class TrainingDivergedError(FloatingPointError):
    """A loss became NaN or infinite; the message names it."""


class TrainResult(typing.NamedTuple):
    """What `train` returns; unpacks as `model, history, run_dir`."""

    model: keras.Model
    history: keras.callbacks.History
    run_dir: Path


def _check_resumable(run_dir, config):
    backup, saved = run_dir / "backup", run_dir / "config.toml"
    if not backup.exists() or not saved.exists():
        return False
    previous = config_from_dict(tomllib.loads(saved.read_text()), str(saved))
    if previous.to_dict() != config.to_dict():
        raise ValueError(
            f"{run_dir} holds an interrupted run with a different config "
            f"({saved}). Resume it with that config, remove {backup} to start "
            "over, or pick another directory with --set train.run_dir=DIR."
        )
    return True


def _monitor_mode(monitor):
    """`min` or `max` for a log such as `val_fine_loss` or `val_income_auc`.

    Keras infers the mode of `loss` and of compiled metrics only; a task's
    loss (`val_fine_loss`) it cannot place, and refuses.
    """
    try:
        direction = task_lib.metric_direction(monitor)
    except ValueError:
        return "auto"
    return "min" if direction == "lower" else "max"


def default_callbacks(config, run_dir, resuming=False, backup_dir=None):
    """The callbacks of every run: backup, best checkpoint, logs, NaN guard."""
    monitor = config.train.monitor
    mode = _monitor_mode(monitor)
    every_seconds = config.train.backup_every_seconds
    # The backup and the checkpoint work once an epoch; their batch hooks
    # would slow every step (see keras_mtl/callbacks.py).
    callbacks = [
        # First, so that the callbacks after it can watch val_unweighted_loss.
        UnweightedLoss(config.task_names),
        epoch_only(
            MultiWorkerBackupAndRestore(
                str(backup_dir or run_dir / "backup"), every_seconds=every_seconds
            )
        ),
        epoch_only(
            BestModelCheckpoint(
                str(run_dir / "checkpoints" / "best.keras"),
                monitor=monitor,
                mode=mode,
                every_seconds=every_seconds,
            )
        ),
        EpochTensorBoard(str(run_dir / "logs")),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=resuming),
        TerminateOnNaN(),
        *schedule_callbacks(config.train, monitor, mode),
    ]
    if config.train.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor,
                mode=mode,
                patience=config.train.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    return callbacks


def _history_value(text):
    """A number of `history.csv`, or None where Keras' CSVLogger wrote "NA"
    (a metric that an epoch did not log, e.g. with no validation split)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _write_history_json(run_dir):
    with open(run_dir / "history.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    history = {
        key: [_history_value(row[key]) for row in rows]
        for key in (rows[0] if rows else {})
    }
    # CSVLogger adds `val_` columns even to a run without validation data.
    history = {
        key: values
        for key, values in history.items()
        if any(value is not None for value in values)
    }
    (run_dir / "history.json").write_text(json.dumps(history, indent=1))


def _keep_history_until(path, epochs):
    """Drops the rows of `history.csv` from epoch `epochs` on: a run killed
    after its last backup logged epochs that its resume trains again."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if int(line.split(",")[0]) < epochs]
    if kept != lines:
        _write_text_atomically(path, "".join(kept))


def _write_text_atomically(path, text):
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _prepare_run_dir(config, strategy):
    """`(run_dir, resuming)`; the chief writes the run's config there."""
    run_dir = run_dir_for(config)
    resuming = _check_resumable(run_dir, config)
    if is_chief(strategy):
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_text_atomically(run_dir / "config.toml", config.to_toml())
    return run_dir, resuming


def _raise_if_diverged(callbacks, history, run_dir):
    """Raises `TrainingDivergedError` when `TerminateOnNaN` stopped the run."""
    nan_guard = next(c for c in callbacks if isinstance(c, TerminateOnNaN))
    if nan_guard.bad_losses:
        raise TrainingDivergedError(
            f"Training stopped at batch {nan_guard.batch} of epoch "
            f"{len(history.epoch)}: {', '.join(nan_guard.bad_losses)} became NaN or "
            f"infinite. Lower train.learning_rate or the weight of that task. The "
            f"best model so far is {run_dir / 'checkpoints' / 'best.keras'}."
        )


def train(config, *, datasets=None, strategy=None, callbacks=(), verbose="auto"):
    """Trains the two-head model of `config` with `model.fit`.

    Rerunning an interrupted run (same config, same run directory) resumes
    after its last finished epoch. Under `MultiWorkerMirroredStrategy` every
    worker calls `train` alike; only the chief writes the run directory, and
    holds its lock: one `train` at a time per run directory.

    Args:
        config: A `keras_mtl.Config`.
        datasets: A `keras_mtl.Datasets`; loaded from `config` by default.
        strategy: A `tf.distribute.Strategy`; `make_strategy(config.train)`
            by default.
        callbacks: More Keras callbacks, run after the default ones.
        verbose: `model.fit` verbosity (`"auto"`, 0, 1 or 2).

    Returns:
        A `TrainResult(model, history, run_dir)`.

    Raises:
        TrainingDivergedError: A loss became NaN or infinite.
        ValueError: The run directory cannot be written, or another process
            trains in it.

    Example:

    ```python
    model, history, run_dir = keras_mtl.train(keras_mtl.load_config("shapes"))
    ```
    """
    strategy = strategy or make_strategy(config.train)
    keras.utils.set_random_seed(config.train.seed)
    chief = is_chief(strategy)
    if chief:  # The others write nothing there (`chief_or_scratch_dir`).
        check_writable_dir(run_dir_for(config), "train.run_dir", config.train.run_dir)
    with lock_run_dir(run_dir_for(config), enabled=chief):
        if datasets is None:
            datasets = load_datasets(config, replicas=strategy.num_replicas_in_sync)
        return _fit(config, datasets, strategy, callbacks, verbose)


def _fit(config, datasets, strategy, callbacks, verbose):
    """`train` in a run directory that this process holds."""
    run_dir, resuming = _prepare_run_dir(config, strategy)
    logger.info(
        "Training %r with %s; examples: %s",
        config.name,
        describe_strategy(strategy),
        datasets.sizes,
    )
    steps = int(datasets.train.cardinality())
    fit_config = with_steps_per_execution(
        config, strategy, steps if steps > 0 else None
    )
    model = build_model(fit_config, datasets.features, strategy=strategy)
    with chief_or_scratch_dir(run_dir, strategy) as write_dir:
        all_callbacks = default_callbacks(
            config, write_dir, resuming, backup_dir=run_dir / "backup"
        ) + list(callbacks)
        if config.weighting.diagnostics:  # First, so that the logs record it.
            all_callbacks.insert(0, GradientDiagnostics(diagnostic_batch(datasets)))
        fractions = LabelledFractions(datasets.labelled, datasets.sizes)
        if fractions.incomplete:
            all_callbacks.insert(0, fractions)
        finished = backup_epoch(run_dir / "backup") if resuming else 0
        if resuming:
            _keep_history_until(write_dir / "history.csv", finished)
        histories = []
        with stop_on_sigterm():
            try:
                for phase in _phases_to_run(config, finished):
                    if phase.first_epoch > 0:  # build_model made phase 1's model.
                        _enter_next_phase(model, fit_config, phase, datasets)
                    history = _fit_phase(
                        model,
                        datasets,
                        phase,
                        all_callbacks,
                        verbose,
                        after_phase=bool(histories),
                        last=phase.last_epoch == config.train.epochs,
                    )
                    histories.append(history)
                    if _diverged(all_callbacks):
                        break
            except BaseException:  # Ctrl-C, SIGTERM, a failing callback.
                save_unsaved(all_callbacks, logger)
                raise
        _write_history_json(write_dir)
    history = merge_histories(histories)
    _raise_if_diverged(all_callbacks, history, run_dir)
    return TrainResult(model, history, run_dir)


def _phases_to_run(config, finished):
    """The `training_phases` not finished before a resume at epoch `finished`
    (at least the last one, whose `fit` restores the backup)."""
    phases = training_phases(config)
    return [p for p in phases if p.last_epoch > finished] or phases[-1:]


def _diverged(callbacks):
    return any(isinstance(c, TerminateOnNaN) and c.bad_losses for c in callbacks)


def _enter_next_phase(model, config, phase, datasets):
    logger.info(
        "Epoch %d: the Trunk %s, learning rate %g",
        phase.first_epoch,
        "trains" if phase.trunk_trainable else "is frozen",
        phase.learning_rate,
    )
    enter_phase(model, config, phase, normalized_targets(config, datasets.features))


def _fit_phase(model, datasets, phase, callbacks, verbose, after_phase, last):
    """`model.fit` over the epochs of `phase`, with one iterator of the
    training batches for all of them (`repeat_epochs`).

    The backup is kept at the end of a phase that another follows, and, when
    that phase ran in this process (`after_phase`), written again in the
    next phase's layout (its new optimizer) before the next phase starts.
    """
    for callback in callbacks:
        if isinstance(callback, MultiWorkerBackupAndRestore):
            callback.delete_checkpoint = last
            if after_phase:
                callback.save_backup(phase.first_epoch)
        if isinstance(callback, keras.callbacks.CSVLogger) and phase.first_epoch:
            callback.append = True
    batches, steps = repeat_epochs(datasets.train)
    return model.fit(
        batches,
        steps_per_epoch=steps,
        validation_data=datasets.validation,
        initial_epoch=phase.first_epoch,
        epochs=phase.last_epoch,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # The pipeline shuffles.
    )
