"""Run configuration: typed dataclasses read from TOML, presets and `--set`.

A run is described by one `Config`: where the data comes from, the two tasks in
head order, the model, training and export settings. It is read from a TOML
file or a named preset (`keras_mtl/config/presets/<name>.toml`), then
overridden by `section.key=value` strings, as `keras-mtl train --set
train.epochs=1` does. Unknown keys, wrong types and impossible values raise
`ValueError` naming the key, the file, what was expected and what was received.

| module | holds |
|---|---|
| `schema` | the dataclasses, `Config` and one per TOML table |
| `loading` | presets, `load_config`, `config_from_dict`, `--set` overrides |
| `validation` | the checks of values that the types allow |
| `writing` | TOML text (`Config.to_toml`) |
| `weighting_methods` | the registry of loss-weighting methods and their keys |

Nothing here imports TensorFlow or Keras: `keras-mtl config` runs without them.

Example:

```python
config = keras_mtl.load_config("shapes", overrides=["train.epochs=1"])
config.tasks[0].name  # "coarse"
```
"""

from keras_mtl.config import weighting_methods
from keras_mtl.config.loading import (
    PRESETS_DIR,
    config_from_dict,
    list_presets,
    load_config,
    resolve_path,
)
from keras_mtl.config.schema import (
    Config,
    DataConfig,
    ExportConfig,
    ModelConfig,
    TaskConfig,
    TrainConfig,
    TuningConfig,
    WeightingConfig,
)
from keras_mtl.config.validation import (
    DATA_SOURCES,
    HEAD2_INPUTS,
    OPTIMIZERS,
    STRATEGIES,
    TASK_KINDS,
    TRUNKS,
    TUNERS,
)

__all__ = [
    "DATA_SOURCES",
    "HEAD2_INPUTS",
    "OPTIMIZERS",
    "PRESETS_DIR",
    "STRATEGIES",
    "TASK_KINDS",
    "TRUNKS",
    "TUNERS",
    "Config",
    "DataConfig",
    "ExportConfig",
    "ModelConfig",
    "TaskConfig",
    "TrainConfig",
    "TuningConfig",
    "WeightingConfig",
    "config_from_dict",
    "list_presets",
    "load_config",
    "resolve_path",
    "weighting_methods",
]
