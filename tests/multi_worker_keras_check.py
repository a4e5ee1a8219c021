"""One worker of a 2-worker cluster that tries `model.fit` three ways.

Run by `tests/test_multi_worker.py` with a `TF_CONFIG` per process; prints one
JSON line: for each way, "ok" or the error message.

1. `plain`: a plain `keras.Model`, no workaround.
2. `first_replica_build`: with `MultiTaskModel`'s symbolic build (the first
   replica's batch), without `keras_mtl.compat.keras_multi_worker`.
3. `workaround`: the same with the workaround installed.
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_mtl.compat import keras_multi_worker  # noqa: E402
from keras_mtl.models import MultiTaskModel  # noqa: E402


def fit(strategy, model_class):
    with strategy.scope():
        inputs = keras.Input((4,), name="x")
        outputs = {"y": keras.layers.Dense(1, name="dense")(inputs)}
        model = model_class(inputs, outputs)
        model.compile("sgd", loss={"y": "mse"})
    data = tf.data.Dataset.from_tensor_slices(
        ({"x": np.ones((32, 4), "float32")}, {"y": np.zeros((32, 1), "float32")})
    ).batch(8, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    try:
        model.fit(data.with_options(options), epochs=1, verbose=0)
    except Exception as error:  # noqa: BLE001 - the message is the result.
        return f"{type(error).__name__}: {error}"[:500]
    return "ok"


def main():
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    results = {
        "plain": fit(strategy, keras.Model),
        "first_replica_build": fit(strategy, MultiTaskModel),
    }
    keras_multi_worker.install()
    results["workaround"] = fit(strategy, MultiTaskModel)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
