"""Training on several machines with `MultiWorkerMirroredStrategy`.

`cluster` reads `TF_CONFIG` and makes the strategy, `backup` keeps one backup
for all workers, `launcher` runs a cluster of local processes
(`keras-mtl train --workers N`), and `report` is what workers tell it.
"""

from keras_mtl.multi_worker.backup import MultiWorkerBackupAndRestore
from keras_mtl.multi_worker.cluster import (
    EXAMPLE_TF_CONFIG,
    ClusterConfig,
    chief_or_scratch_dir,
    cluster_of,
    is_chief,
    make_multi_worker_strategy,
    parse_tf_config,
    read_tf_config,
)
from keras_mtl.multi_worker.report import weights_digest

__all__ = [
    "EXAMPLE_TF_CONFIG",
    "ClusterConfig",
    "MultiWorkerBackupAndRestore",
    "chief_or_scratch_dir",
    "cluster_of",
    "is_chief",
    "make_multi_worker_strategy",
    "parse_tf_config",
    "read_tf_config",
    "weights_digest",
]
