"""The fence around the private Keras and TensorFlow names keras-mtl uses.

Nothing outside this package imports `keras.src` or touches a private
(`_name`) attribute of a Keras or TensorFlow object. One module per upstream
area:

- `keras_trainer`: the compiled loss walked output by output (weighting,
  gradient diagnostics), the loss tracker, additional losses, the initial
  epoch, a layer's own variables, the build from the first replica's
  batch under a strategy (`FirstReplicaSymbolicBuild`, a mixin of
  `MultiTaskModel`), and exact epochs of an endless dataset whatever the
  steps per call (`ExactEpochSteps`, another).
- `keras_callbacks`: TensorBoard's writers, `BackupAndRestore`'s save hook
  and `keras.src.utils.file_utils`.
- `keras_multi_worker`: the patch for `model.fit` under
  `MultiWorkerMirroredStrategy` (keras #20585).
- `keras_tuner_oracle`: `Oracle._random_values` / `Oracle._duplicate`, so
  that a search's oracle proposes the reference trial first.
- `tf_function`: a loaded signature's function run by name as one eager op
  (`ConcreteFunction._inference_function`, `eager.execute`), and
  `EagerTensor` built directly, for serving; the callers check both against
  the public calls and fall back.

Every private name has a canary test in `tests/test_compat.py` that fails,
naming the name and the installed Keras/TensorFlow versions, when upstream
changes it; workarounds also have a test that fails once upstream no longer
needs them. Private modules are imported on first use, so `import keras_mtl`
works on any Keras; a missing name raises `KerasInternalsError` only when the
feature that needs it runs.
"""

from keras_mtl.compat.internals import TESTED_RANGE, KerasInternalsError

__all__ = ["TESTED_RANGE", "KerasInternalsError"]
