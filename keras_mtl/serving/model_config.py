"""TF Serving's text-proto config files: models, batching, monitoring.

The same files work for `tensorflow_model_server` and `keras-mtl serve`:

```
model_config_list {
  config {
    name: "shapes"
    base_path: "/models/shapes"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
}
```

`--batching_parameters_file` holds a `BatchingParameters`
(`max_batch_size { value: 64 }`, ...) and `--monitoring_config_file` a
`MonitoringConfig` (`prometheus_config { enable: true }`), and
`--ssl_config_file` an `SSLConfig` (`server_key: "-----BEGIN ..."`,
`server_cert`, `custom_ca`, `client_verify: true`). They are parsed
with protobuf's own text format: `ModelServerConfig` from the
`tensorflow-serving-api` package when it is installed, and the other messages
(which that package does not ship) from their TF Serving definitions, declared
here field for field.
"""

import dataclasses
from pathlib import Path

from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,
)

from keras_mtl.serving.batching import BatchingParameters
from keras_mtl.serving.metrics import PROMETHEUS_PATH

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_WRAPPERS = {
    "int64": ".google.protobuf.Int64Value",
    "str": ".google.protobuf.StringValue",
}

# TF Serving's messages (session_bundle_config.proto, monitoring_config.proto,
# model_server_config.proto, file_system_storage_path_source.proto):
# name -> [(field, number, type, label, message type)].
_MESSAGES = {
    "BatchingParameters": [
        ("max_batch_size", 1, _F.TYPE_MESSAGE, _OPTIONAL, _WRAPPERS["int64"]),
        ("batch_timeout_micros", 2, _F.TYPE_MESSAGE, _OPTIONAL, _WRAPPERS["int64"]),
        ("max_enqueued_batches", 3, _F.TYPE_MESSAGE, _OPTIONAL, _WRAPPERS["int64"]),
        ("num_batch_threads", 4, _F.TYPE_MESSAGE, _OPTIONAL, _WRAPPERS["int64"]),
        ("thread_pool_name", 5, _F.TYPE_MESSAGE, _OPTIONAL, _WRAPPERS["str"]),
        ("allowed_batch_sizes", 6, _F.TYPE_INT64, _REPEATED, None),
        ("pad_variable_length_inputs", 7, _F.TYPE_BOOL, _OPTIONAL, None),
    ],
    "SSLConfig": [
        ("server_key", 1, _F.TYPE_STRING, _OPTIONAL, None),
        ("server_cert", 2, _F.TYPE_STRING, _OPTIONAL, None),
        ("custom_ca", 3, _F.TYPE_STRING, _OPTIONAL, None),
        ("client_verify", 4, _F.TYPE_BOOL, _OPTIONAL, None),
    ],
    "PrometheusConfig": [
        ("enable", 1, _F.TYPE_BOOL, _OPTIONAL, None),
        ("path", 2, _F.TYPE_STRING, _OPTIONAL, None),
    ],
    "MonitoringConfig": [
        ("prometheus_config", 1, _F.TYPE_MESSAGE, _OPTIONAL, ".{p}.PrometheusConfig"),
    ],
    "Latest": [("num_versions", 1, _F.TYPE_UINT32, _OPTIONAL, None)],
    "All": [],
    "Specific": [("versions", 1, _F.TYPE_INT64, _REPEATED, None)],
    "ServableVersionPolicy": [
        ("latest", 100, _F.TYPE_MESSAGE, _OPTIONAL, ".{p}.Latest"),
        ("all", 101, _F.TYPE_MESSAGE, _OPTIONAL, ".{p}.All"),
        ("specific", 102, _F.TYPE_MESSAGE, _OPTIONAL, ".{p}.Specific"),
    ],
    "VersionLabelsEntry": [
        ("key", 1, _F.TYPE_STRING, _OPTIONAL, None),
        ("value", 2, _F.TYPE_INT64, _OPTIONAL, None),
    ],
    "ModelConfig": [
        ("name", 1, _F.TYPE_STRING, _OPTIONAL, None),
        ("base_path", 2, _F.TYPE_STRING, _OPTIONAL, None),
        ("model_platform", 4, _F.TYPE_STRING, _OPTIONAL, None),
        (
            "model_version_policy",
            7,
            _F.TYPE_MESSAGE,
            _OPTIONAL,
            ".{p}.ServableVersionPolicy",
        ),
        ("version_labels", 8, _F.TYPE_MESSAGE, _REPEATED, ".{p}.VersionLabelsEntry"),
    ],
    "ModelConfigList": [
        ("config", 1, _F.TYPE_MESSAGE, _REPEATED, ".{p}.ModelConfig"),
    ],
    "ModelServerConfig": [
        ("model_config_list", 1, _F.TYPE_MESSAGE, _OPTIONAL, ".{p}.ModelConfigList"),
    ],
}
_PACKAGE = "tensorflow.serving"


def _declared_messages():
    """Message classes for _MESSAGES, in a pool of their own."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(
        descriptor_pb2.FileDescriptorProto.FromString(
            wrappers_pb2.DESCRIPTOR.serialized_pb
        )
    )
    file = descriptor_pb2.FileDescriptorProto(
        name="keras_mtl/serving/tf_serving_config.proto",
        package=_PACKAGE,
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        if name == "VersionLabelsEntry":
            message.options.map_entry = True
        if name == "ServableVersionPolicy":
            message.oneof_decl.add(name="policy_choice")
        for field, number, kind, label, type_name in fields:
            entry = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = type_name.format(p=_PACKAGE)
            if name == "ServableVersionPolicy":
                entry.oneof_index = 0
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")
        )
        for name in (
            "BatchingParameters",
            "MonitoringConfig",
            "ModelServerConfig",
            "SSLConfig",
        )
    }


_CLASSES = _declared_messages()


def model_server_config_class(prefer_installed=True):
    """`ModelServerConfig` from tensorflow-serving-api, else the declared one."""
    if prefer_installed:
        try:
            from tensorflow_serving.config import model_server_config_pb2

            return model_server_config_pb2.ModelServerConfig
        except ImportError:
            pass
    return _CLASSES["ModelServerConfig"]


def _parse(path, message_class, flag):
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{flag}: no such file. Received: {flag}={str(path)!r}")
    message = message_class()
    try:
        text_format.Parse(path.read_text(), message)
    except text_format.ParseError as error:
        raise ValueError(
            f"{flag}: {path} is not a valid {message.DESCRIPTOR.full_name} text "
            f"proto: {error}"
        ) from None
    return message


@dataclasses.dataclass
class ServedModelConfig:
    """One served model: an entry of TF Serving's `model_config_list`.

    Attributes:
        name: The model's name in URLs and ModelSpecs.
        base_path: The directory holding the integer version directories.
        version_policy: `("latest", n)`, `("all",)` or
            `("specific", (v1, v2, ...))`.
        version_labels: Label -> version.
    """

    name: str
    base_path: str
    version_policy: tuple = ("latest", 1)
    version_labels: dict = dataclasses.field(default_factory=dict)

    def aspired(self, versions):
        kind = self.version_policy[0]
        if kind == "all":
            return set(versions)
        if kind == "specific":
            return set(versions) & set(self.version_policy[1])
        return set(sorted(versions)[-max(1, self.version_policy[1]) :])


def _policy(config):
    policy = config.model_version_policy
    which = policy.WhichOneof("policy_choice")
    if which == "all":
        return ("all",)
    if which == "specific":
        versions = tuple(policy.specific.versions)
        if not versions:
            raise ValueError(
                f"--model_config_file: model {config.name!r} has a `specific` "
                "version policy with no `versions` entry; list at least one."
            )
        return ("specific", versions)
    return ("latest", policy.latest.num_versions or 1)


def read_model_config_file(path, prefer_installed=True):
    """The models of a `--model_config_file` as `ServedModelConfig`s."""
    flag = "--model_config_file"
    message = _parse(path, model_server_config_class(prefer_installed), flag)
    if not message.HasField("model_config_list"):
        raise ValueError(
            f"{flag}: {path} has no model_config_list; keras-mtl serve reads "
            "`model_config_list { config { name: ... base_path: ... } }`."
        )
    configs = []
    for config in message.model_config_list.config:
        if not config.name or not config.base_path:
            raise ValueError(
                f"{flag}: every config needs a name and a base_path. Received: "
                f"name={config.name!r}, base_path={config.base_path!r}"
            )
        if config.model_platform not in ("", "tensorflow"):
            raise ValueError(
                f"{flag}: model {config.name!r} has model_platform "
                f"{config.model_platform!r}; keras-mtl serve serves 'tensorflow' "
                "SavedModels."
            )
        configs.append(
            ServedModelConfig(
                config.name,
                config.base_path,  # relative paths are relative to the cwd, as in TF
                _policy(config),
                dict(config.version_labels),
            )
        )
    if not configs:
        raise ValueError(f"{flag}: {path} lists no models.")
    return configs


def read_batching_parameters_file(path):
    """A `--batching_parameters_file` as `BatchingParameters`."""
    message = _parse(path, _CLASSES["BatchingParameters"], "--batching_parameters_file")
    values = {}
    for field in (
        "max_batch_size",
        "batch_timeout_micros",
        "max_enqueued_batches",
        "num_batch_threads",
        "thread_pool_name",
    ):
        if message.HasField(field):
            values[field] = getattr(message, field).value
    values["allowed_batch_sizes"] = tuple(message.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = message.pad_variable_length_inputs
    return BatchingParameters(**values)


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
    """Whether Prometheus metrics are served, and at which path."""

    prometheus_enabled: bool = False
    prometheus_path: str = PROMETHEUS_PATH


def read_monitoring_config_file(path):
    """A `--monitoring_config_file` as `MonitoringConfig`."""
    message = _parse(path, _CLASSES["MonitoringConfig"], "--monitoring_config_file")
    prometheus = message.prometheus_config
    return MonitoringConfig(prometheus.enable, prometheus.path or PROMETHEUS_PATH)


def read_ssl_config_file(path):
    """A `--ssl_config_file` (TF Serving's `SSLConfig`) as `tls.SSLConfig`."""
    from keras_mtl.serving.tls import SSLConfig

    message = _parse(path, _CLASSES["SSLConfig"], "--ssl_config_file")
    return SSLConfig(
        message.server_key,
        message.server_cert,
        message.custom_ca,
        message.client_verify,
        source=str(path),
    )
