"""Gradient diagnostics: how much gradient each loss sends into each block.

The seed diagram's backward arrows, measured: for each task's loss (unweighted)
the norm of its gradient with respect to the parameters of the Trunk, Head 1
and Head 2, and with respect to the model's float inputs; and, on the shared
blocks, the cosine between the two tasks' gradients (negative: they pull the
shared parameters in conflicting directions, which is what `pcgrad` projects
away). Loss 1's gradient on Head 2 is computed like every other, so its zero
is a measurement.

Example:

```python
report = keras_mtl.diagnose_gradients(model, next(iter(datasets.validation)))
report.norms["trunk"]["fine"], report.cosine["trunk"]
```
"""

import dataclasses
import math

import keras
import tensorflow as tf

from keras_mtl.compat import keras_trainer
from keras_mtl.weighting.base import unscale_for_replicas

BLOCKS = ("trunk", "head1", "head2")
SHARED_BLOCKS = ("trunk", "head1")
COSINES = ("trunk", "head1", "shared")
DIAGNOSTICS = "gradient diagnostics (keras_mtl.diagnose_gradients)"


@dataclasses.dataclass
class GradientReport:
    """What `diagnose_gradients` measured on one batch.

    Attributes:
        tasks: The task names in head order (Loss 1's task first).
        losses: Task -> its unweighted loss on the batch.
        norms: Block (`"input"`, `"trunk"`, `"head1"`, `"head2"`) -> task ->
            the norm of that task's loss gradient on the block's parameters
            (for `"input"`: on the model's float inputs; NaN when it has none).
        cosine: `"trunk"`, `"head1"` and `"shared"` (both) -> the cosine
            between the two tasks' gradients there (NaN if one is zero).
    """

    tasks: list
    losses: dict
    norms: dict
    cosine: dict

    def to_logs(self):
        """Flat log entries: `grad_norm_<block>_<task>`, `grad_cosine_<block>`
        and `grad_loss_<task>` (the loss on the measured batch)."""
        logs = {f"grad_loss_{task}": value for task, value in self.losses.items()}
        logs |= {
            f"grad_norm_{block}_{task}": value
            for block, by_task in self.norms.items()
            for task, value in by_task.items()
        }
        logs.update({f"grad_cosine_{block}": v for block, v in self.cosine.items()})
        return logs

    @classmethod
    def from_logs(cls, logs, tasks):
        """The report recorded in one epoch's logs (see `to_logs`)."""
        missing = f"grad_norm_trunk_{tasks[0]}"
        if missing not in logs:
            raise ValueError(
                f"No gradient diagnostics in these logs (no {missing!r}); train "
                "with weighting.diagnostics=true. Received keys: "
                f"{sorted(logs)[:12]}"
            )
        norms = {
            block: {task: float(logs[f"grad_norm_{block}_{task}"]) for task in tasks}
            for block in ("input", *BLOCKS)
        }
        cosine = {block: float(logs[f"grad_cosine_{block}"]) for block in COSINES}
        losses = {task: float(logs[f"grad_loss_{task}"]) for task in tasks}
        return cls(list(tasks), losses, norms, cosine)


def _norm(tensors):
    return float(tf.linalg.global_norm(tensors)) if tensors else math.nan


def _cosine(first, second):
    dot = sum(float(tf.reduce_sum(a * b)) for a, b in zip(first, second, strict=True))
    scale = _norm(first) * _norm(second)
    return dot / scale if scale > 0 else math.nan


def _measure(model, inputs, labels):
    """Each task's unweighted loss and its gradients, grouped by block."""
    float_inputs = [t for t in inputs.values() if t.dtype.is_floating]
    blocks = {
        name: [v.value for v in model.get_layer(name).trainable_variables]
        for name in BLOCKS
    }
    compile_loss = keras_trainer.compiled_loss(model, DIAGNOSTICS)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(float_inputs)
        outputs = model(inputs, training=False)
        losses = {
            path[-1]: unscale_for_replicas(
                loss_fn(labels[path[-1]], outputs[path[-1]], None)
            )
            for path, loss_fn, _ in keras_trainer.output_losses(
                compile_loss, labels, outputs, DIAGNOSTICS
            )
        }
    sources = [*float_inputs, *[v for name in BLOCKS for v in blocks[name]]]
    gradients = {}
    for task in losses:
        flat = tape.gradient(losses[task], sources)
        # Unconnected (Loss 1 on Head 2): the gradient is zero, and measured so.
        flat = [
            tf.zeros(source.shape, source.dtype)
            if gradient is None
            else tf.convert_to_tensor(gradient)
            for gradient, source in zip(flat, sources, strict=True)
        ]
        gradients[task] = {"input": flat[: len(float_inputs)]}
        offset = len(float_inputs)
        for name in BLOCKS:
            gradients[task][name] = flat[offset : offset + len(blocks[name])]
            offset += len(blocks[name])
    del tape
    return losses, gradients


def diagnose_gradients(model, batch):
    """Measures each loss's gradient on each block of `model` on `batch`.

    The model runs in inference mode (no dropout) and nothing in it changes.

    Args:
        model: A compiled two-head model (`build_model`) with blocks named
            `trunk`, `head1` and `head2` and one output per task.
        batch: `(inputs, labels)` (a third element, sample weights, is
            ignored), e.g. `next(iter(datasets.validation))`.

    Returns:
        A `GradientReport`.

    Example:

    ```python
    report = diagnose_gradients(model, (inputs, labels))
    report.norms["head2"]["coarse"]  # 0.0: Loss 1 never reaches Head 2
    ```
    """
    if keras_trainer.compiled_loss(model, DIAGNOSTICS) is None:
        raise ValueError(
            "diagnose_gradients needs a compiled model (its losses). Compile it "
            "with keras_mtl.compile_model or build it with build_model."
        )
    inputs, labels = batch[0], batch[1]
    tasks = list(model.output)
    inputs = {name: tf.convert_to_tensor(value) for name, value in inputs.items()}
    if tf.distribute.in_cross_replica_context():
        # Inside a strategy's scope a distributed variable's gradient exists
        # only in a replica context: measure there (every replica alike).
        strategy = tf.distribute.get_strategy()
        result = strategy.run(_measure, args=(model, inputs, labels))
        losses, gradients = tf.nest.map_structure(
            lambda value: strategy.experimental_local_results(value)[0], result
        )
    else:
        losses, gradients = _measure(model, inputs, labels)
    norms = {
        block: {task: _norm(gradients[task][block]) for task in tasks}
        for block in ("input", *BLOCKS)
    }
    first, second = (gradients[task] for task in tasks)
    cosine = {name: _cosine(first[name], second[name]) for name in SHARED_BLOCKS}
    cosine["shared"] = _cosine(
        [g for name in SHARED_BLOCKS for g in first[name]],
        [g for name in SHARED_BLOCKS for g in second[name]],
    )
    return GradientReport(
        tasks=tasks,
        losses={task: float(losses[task]) for task in tasks},
        norms=norms,
        cosine=cosine,
    )


def diagnostic_batch(datasets):
    """The first validation batch (the first test batch without validation).

    Never a training batch: drawing one would advance a shuffled training
    split's order and change the run.
    """
    split = datasets.validation if datasets.validation is not None else datasets.test
    return next(iter(split.take(1)))


class GradientDiagnostics(keras.callbacks.Callback):
    """Adds `diagnose_gradients` on a fixed batch to every epoch's logs.

    Put it before `CSVLogger` and `TensorBoard` in the callback list so they
    record the values too (`keras_mtl.train` does); `History` always does.

    Args:
        batch: `(inputs, labels)`, measured at the end of every epoch.

    Example:

    ```python
    model.fit(train, epochs=5, callbacks=[GradientDiagnostics(batch)])
    history.history["grad_cosine_trunk"]
    ```
    """

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(diagnose_gradients(self.model, self.batch).to_logs())
