"""Serving exported SavedModels over TensorFlow Serving's REST and gRPC APIs.

`keras-mtl serve` (and `ModelServer` in Python) is a drop-in for
`tensorflow_model_server` where the official server cannot be installed: the
same URLs, JSON, gRPC services, config files and flag names, for what it
implements. Serving depends on `tf.saved_model.load` only, never on training
code.

Example:

```python
from keras_mtl.serving import Client, ModelServer, ServedModelConfig

config = ServedModelConfig("shapes", "saved_models/shapes")
with ModelServer([config], rest_api_port=8501, grpc_port=8500):
    client = Client("127.0.0.1:8501", grpc="127.0.0.1:8500")
    client.predict("shapes", instances=[{"image": image.tolist()}])
```
"""

from keras_mtl.serving.batching import BatchingParameters
from keras_mtl.serving.client import Client
from keras_mtl.serving.model_config import (
    MonitoringConfig,
    ServedModelConfig,
    read_batching_parameters_file,
    read_model_config_file,
    read_monitoring_config_file,
)
from keras_mtl.serving.registry import ModelSpec
from keras_mtl.serving.server import ModelServer
from keras_mtl.serving.status import Code, ServingError

__all__ = [
    "BatchingParameters",
    "Client",
    "Code",
    "ModelServer",
    "ModelSpec",
    "MonitoringConfig",
    "ServedModelConfig",
    "ServingError",
    "read_batching_parameters_file",
    "read_model_config_file",
    "read_monitoring_config_file",
]


def __getattr__(name):
    # `ModelConfig` was this class's name until 0.1; `keras_mtl.ModelConfig` is
    # the architecture's config. The old name stays for one release.
    if name == "ModelConfig":
        import warnings

        warnings.warn(
            "keras_mtl.serving.ModelConfig is renamed ServedModelConfig; the old "
            "name will be removed in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        return ServedModelConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
