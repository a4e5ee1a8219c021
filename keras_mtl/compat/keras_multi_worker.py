"""`model.fit` under `MultiWorkerMirroredStrategy` on Keras 3.15 (keras #20585).

Keras 3.15.1's TensorFlow trainer fails twice with several workers:

1. `_maybe_symbolic_build` averages the first distributed batch over the
   replicas to learn its shapes, and under `MultiWorkerMirroredStrategy` that
   fails ("Attempt to convert a value (PerReplica...)"). keras-mtl's
   `MultiTaskModel._maybe_symbolic_build` already takes the first replica's
   share of the batch instead (it is needed for string inputs on one machine
   too), which covers this half.
2. `reduce_per_replica` reduces every step output with
   `strategy.reduce("MEAN", value, axis=0)` in multi-worker mode, and the
   step outputs are scalars (the logged losses and metrics): "Invalid
   reduction dimension 0 for input with 0 dimensions".

`install()` fixes the second half by reducing scalars with `axis=None`, the
mean over replicas that Keras computes everywhere else. It wraps the module
function that Keras' train and test steps call, changes nothing outside
multi-worker mode, and does nothing on a Keras version outside
`TESTED_KERAS`. `tests/test_multi_worker.py` checks that Keras still fails
without it; when that test fails, upstream is fixed: delete this module.

Example:

```python
from keras_mtl.compat import keras_multi_worker

keras_multi_worker.install()  # before model.fit under MultiWorkerMirroredStrategy
```
"""

import functools
import logging

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

# Versions the workaround was written for and tested with: [low, high).
TESTED_KERAS = ((3, 15), (3, 16))


def keras_version():
    """The installed Keras version as a tuple of ints, e.g. (3, 15, 1)."""
    return tuple(int(part) for part in keras.version().split(".")[:3] if part.isdigit())


def needed(version=None):
    """Whether the Keras `version` (default: the installed one) needs `install`."""
    version = version or keras_version()
    low, high = TESTED_KERAS
    return low <= version[:2] < high


def _trainer_module():
    from keras.src.backend.tensorflow import trainer

    return trainer


def _reduce_scalars_in_multi_worker_mode(original):
    trainer = _trainer_module()

    @functools.wraps(original)
    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not (
            trainer._collective_all_reduce_multi_worker(strategy)
        ):
            return original(values, strategy, reduction)

        def reduce(value):
            axis = None if value.shape.rank == 0 else 0
            return strategy.reduce("MEAN", value, axis=axis)

        return tf.nest.map_structure(reduce, values)

    reduce_per_replica.keras_mtl_original = original
    return reduce_per_replica


def install():
    """Applies the workaround once per process when this Keras needs it.

    Returns:
        True when the workaround is active after the call.
    """
    if not needed():
        logger.warning(
            "Keras %s is outside the range keras-mtl's multi-worker workaround was "
            "tested with (>=%s,<%s); running without it. If model.fit fails under "
            "MultiWorkerMirroredStrategy, install keras>=3.15,<3.16.",
            keras.version(),
            ".".join(map(str, TESTED_KERAS[0])),
            ".".join(map(str, TESTED_KERAS[1])),
        )
        return False
    trainer = _trainer_module()
    if not hasattr(trainer.reduce_per_replica, "keras_mtl_original"):
        trainer.reduce_per_replica = _reduce_scalars_in_multi_worker_mode(
            trainer.reduce_per_replica
        )
    return True


def uninstall():
    """Restores Keras' own `reduce_per_replica` (for tests)."""
    trainer = _trainer_module()
    original = getattr(trainer.reduce_per_replica, "keras_mtl_original", None)
    if original is not None:
        trainer.reduce_per_replica = original
