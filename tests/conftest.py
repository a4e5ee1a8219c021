"""Shared fixtures. Two logical CPUs are configured before TensorFlow starts,
so tests can run the 2-replica MirroredStrategy path for real."""

import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_mtl  # noqa: E402
import keras_mtl.data  # noqa: E402, F401  (registers the embedded TFDS builder)

keras_mtl.configure_cpu_replicas(2)

REPO = Path(__file__).resolve().parent.parent


class TrunkRecorder(keras.callbacks.Callback):
    """Per epoch: the Trunk's trainable flag, the learning rate, its weights."""

    def __init__(self):
        super().__init__()
        self.epochs = {}
        self.initial = None

    def on_train_begin(self, logs=None):
        if self.initial is None:
            self.initial = [np.array(v) for v in self.model.get_layer("trunk").weights]

    def on_epoch_end(self, epoch, logs=None):
        trunk = self.model.get_layer("trunk")
        self.epochs[epoch] = (
            trunk.trainable,
            float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
            [np.array(v) for v in trunk.weights],
        )


class InterruptAtEpoch(keras.callbacks.Callback):
    """Raises as epoch `epoch` starts, like a killed job."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")


@contextlib.contextmanager
def run_dir_held_by_another_process(run_dir):
    """Yields the `subprocess.Popen` of a process holding `run_dir`'s lock."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from keras_mtl.run_directory import lock_run_dir\n"
            "with lock_run_dir(sys.argv[1]):\n"
            "    print('locked', flush=True)\n"
            "    time.sleep(120)\n",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def adult_csv_path():
    """The UCI Adult CSV: $KERAS_MTL_ADULT_CSV, else ../shared/data/adult/adult.csv."""
    candidate = (
        os.environ.get("KERAS_MTL_ADULT_CSV")
        or REPO.parent / "shared/data/adult/adult.csv"
    )
    return Path(candidate)


@pytest.fixture
def adult_csv():
    path = adult_csv_path()
    if not path.is_file():
        pytest.skip(f"UCI Adult CSV not found at {path}; set KERAS_MTL_ADULT_CSV")
    return path


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory):
    """A TFDS data_dir holding the generated `shapes/tiny` dataset."""
    import tensorflow_datasets as tfds

    data_dir = tmp_path_factory.mktemp("tensorflow_datasets")
    tfds.builder("shapes/tiny", data_dir=str(data_dir)).download_and_prepare()
    return data_dir


def tiny_overrides(tmp_path, data_dir):
    return [
        "data.dataset=shapes/tiny",
        f"data.data_dir={data_dir}",
        "train.epochs=1",
        "train.batch_size=64",
        f"train.run_dir={tmp_path / 'runs'}",
        f"export.base_dir={tmp_path / 'saved_models'}",
        "model.width=8",
        "model.depth=2",
        "model.head_units=16",
    ]


@pytest.fixture
def tiny_config(tmp_path, shapes_data_dir):
    """The shapes preset shrunk to seconds: tiny data, tiny model, one epoch."""
    return keras_mtl.load_config("shapes", tiny_overrides(tmp_path, shapes_data_dir))
