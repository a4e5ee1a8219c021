"""`keras-mtl`: train, evaluate, predict, serve, tune and inspect configs.

    keras-mtl train [--preset NAME | --config FILE] [--set KEY=VALUE ...] [--replicas N]
                    [--workers N [--max-restarts K]]
    keras-mtl evaluate --model DIR [--split test|validation]
    keras-mtl predict --model DIR --input FILE | IMAGE [IMAGE ...]
    keras-mtl serve --model_name NAME --model_base_path DIR [TF Serving flags]
    keras-mtl config [--preset NAME | --config FILE] [--set KEY=VALUE ...]
    keras-mtl baseline [--preset NAME | --config FILE] [--set ...] [--seeds 0 1 2]
    keras-mtl tune [--preset NAME | --config FILE] [--set ...] [--tuner NAME]
                   [--max-trials N] [--objective NAME] [--overwrite]
    keras-mtl diagnose (--run-dir DIR | --model FILE.keras) [--output DIR]

One module per command group (`train`, `saved_models`, `serve`, `diagnose`,
`tuning`, `multi_worker`), what they share in `common`. Nothing here imports
TensorFlow until a command that needs it runs, so `keras-mtl --help` and
`keras-mtl config` answer at once. A bad argument or config prints one line
and exits with status 2.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mtl.cli.common import EXIT_USAGE, UsageError  # noqa: E402
from keras_mtl.cli.main import build_parser, main  # noqa: E402

__all__ = ["EXIT_USAGE", "UsageError", "build_parser", "main"]
