"""One process of `bench_multi_worker.py`: trains and reports its timings.

    python benchmarks/multi_worker_bench_worker.py STRATEGY DATA_DIR RUN_DIR EPOCHS MAX_EXAMPLES

STRATEGY is `default` (one process, no cluster) or `multi_worker` (started by
the launcher with a `TF_CONFIG`). The timings go into the worker report
(`keras_mtl.multi_worker.report`): seconds from process start to the end of
the first training step, and training steps per second over every epoch but
the first (which traces the step function).
"""

import time

PROCESS_START = time.time()

import os  # noqa: E402
import sys  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import keras_mtl  # noqa: E402
from keras_mtl.multi_worker import report  # noqa: E402


class StepTimer(keras.callbacks.Callback):
    """When the first step ended, and the train time and steps of later epochs."""

    def __init__(self):
        super().__init__()
        self.first_step_at = None
        self.steps = 0
        self.seconds = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start, self.epoch_steps = epoch, time.time(), 0

    def on_train_batch_end(self, batch, logs=None):
        now = time.time()
        self.first_step_at = self.first_step_at or now
        self.epoch_steps += 1
        self.last_step_at = now

    def on_epoch_end(self, epoch, logs=None):
        if epoch > 0:
            self.steps += self.epoch_steps
            self.seconds += self.last_step_at - self.epoch_start


def main(strategy_name, data_dir, run_dir, epochs, max_examples):
    report.attach_to_launcher()
    config = keras_mtl.load_config(
        "shapes",
        [
            f"data.data_dir={data_dir}",
            f"data.max_examples={max_examples}",
            f"train.epochs={epochs}",
            f"train.strategy={strategy_name}",
            f"train.run_dir={run_dir}",
        ],
    )
    strategy = keras_mtl.make_strategy(config.train)
    report.report(stage="ready")
    datasets = keras_mtl.load_datasets(config, replicas=strategy.num_replicas_in_sync)
    timer = StepTimer()
    keras_mtl.train(
        config, datasets=datasets, strategy=strategy, callbacks=[timer], verbose=0
    )
    report.report(
        stage="finished",
        replicas=strategy.num_replicas_in_sync,
        process_start=PROCESS_START,
        first_step_at=timer.first_step_at,
        steps_per_second=timer.steps / timer.seconds,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
