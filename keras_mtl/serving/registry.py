"""`ModelRegistry`: the served models, their versions, labels and states.

TF Serving's file-system source and aspired-versions manager, for one
process: every `poll_wait_seconds` it lists each model's base path, keeps the
integer directories its version policy asks for (`latest` N, `all`,
`specific`), loads and warms up new ones, swaps them in, then unloads the
versions no longer wanted; a version whose directory is removed is
unloaded, even the last one. Directories whose names are not integers (an
exporter's `.tmp-export-*`) are ignored. A version that fails to load is
tried again (`LoadRetries`: at once when its files change, else with
backoff), so a version copied in slowly loads once its copy is complete. A
request holds the `Servable` it resolved, so a swap never changes the version
a request in flight runs on.
"""

import dataclasses
import logging
import threading
import time

from keras_mtl.saved_model import LoadedModel, version_dirs
from keras_mtl.serving.load_retries import LoadRetries, directory_fingerprint
from keras_mtl.serving.status import Code, invalid_argument, not_found

logger = logging.getLogger("keras_mtl.serving")

START, LOADING, AVAILABLE, UNLOADING, END = (
    "START",
    "LOADING",
    "AVAILABLE",
    "UNLOADING",
    "END",
)


def _key(name, version):
    return (name, version)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Which model, version (or label) and signature a request names."""

    name: str
    version: int | None = None
    label: str | None = None
    signature_name: str = ""

    def describe(self, version=None):
        """TF Serving's ServableRequest text: `Latest(m)` or `Specific(m, 3)`."""
        version = self.version if version is None else version
        if version is None:
            return f"Latest({self.name})"
        return f"Specific({self.name}, {version})"


@dataclasses.dataclass
class Servable:
    """A loaded version: the model, and where it came from."""

    name: str
    version: int
    path: str
    model: LoadedModel


@dataclasses.dataclass
class VersionState:
    version: int
    state: str = START
    error_code: Code = Code.OK
    error_message: str = ""
    servable: Servable | None = None
    failed_loads: int = 0


class ModelRegistry:
    """Loads, serves and unloads the versions of several models.

    Args:
        configs: `ServedModelConfig`s, one per model.
        poll_wait_seconds: Seconds between looks at the base paths; 0 looks
            once, a negative value never (as TF Serving's flag).
        warmup: Called with each new `Servable` before it is swapped in.
        load: Loads a version directory; `LoadedModel` by default.
        max_num_load_retries: Loads of a failing version retried, with
            backoff, while its files do not change; it is given up after
            them, and tried again when its files change.
        metrics: A `Metrics` to record loads in, or None.
        on_change: Called with "load" or "unload" after a version is swapped
            in or out, or None.

    Example:

    ```python
    registry = ModelRegistry([ServedModelConfig("shapes", "saved_models/shapes")])
    registry.start()
    servable = registry.resolve(ModelSpec("shapes"))
    ```
    """

    def __init__(
        self,
        configs,
        *,
        poll_wait_seconds=1.0,
        warmup=None,
        load=LoadedModel,
        max_num_load_retries=5,
        metrics=None,
        on_change=None,
    ):
        names = [config.name for config in configs]
        if len(set(names)) != len(names):
            raise ValueError(f"Model names must be unique. Received: names={names}")
        self.configs = {config.name: config for config in configs}
        self.poll_wait_seconds = poll_wait_seconds
        self._warmup = warmup
        self._load = load
        self._retries = LoadRetries(poll_wait_seconds, max_num_load_retries)
        self._metrics = metrics
        self._on_change = on_change
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._states = {name: {} for name in self.configs}
        self._available = {name: {} for name in self.configs}
        self._stopped = threading.Event()
        self._thread = None

    def start(self):
        """Loads what is there now, then polls in the background."""
        self.poll()
        if self.poll_wait_seconds > 0:
            self._thread = threading.Thread(
                target=self._poll_loop, name="keras-mtl-model-poller", daemon=True
            )
            self._thread.start()

    def stop(self):
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll_loop(self):
        while not self._stopped.wait(self.poll_wait_seconds):
            try:
                self.poll()
            except Exception:  # A poll must never kill the poller.
                logger.exception("Polling the model base paths failed")

    def poll(self):
        """Looks at every base path once and loads / unloads what changed."""
        with self._poll_lock:
            for config in self.configs.values():
                self._poll_model(config)

    def _poll_model(self, config):
        directories = version_dirs(config.base_path)
        aspired = config.aspired(directories)
        states = self._states[config.name]
        for version in sorted(aspired):
            state = states.get(version)
            if state is None or (
                state.state == END and state.error_code == Code.OK
            ):  # new, or unloaded before and wanted again
                self._load_version(config, version, directories[version])
            elif state.state == END:
                fingerprint = directory_fingerprint(directories[version])
                if self._retries.due(_key(config.name, version), fingerprint):
                    self._load_version(config, version, directories[version])
        for key in self._retries.keys():
            if key[0] == config.name and key[1] not in directories:
                self._retries.forget(key)
        for version in sorted(set(self._available[config.name]) - set(directories)):
            self._unload_version(config, version)  # its directory is gone
        available = self._available[config.name]
        if not (aspired & set(available)):
            return  # Keep serving what is on disk until a wanted version loads.
        for version in sorted(set(available) - aspired):
            self._unload_version(config, version)

    def _set(self, name, state):
        with self._lock:
            self._states[name][state.version] = state

    def _load_version(self, config, version, path):
        previous = self._states[config.name].get(version)
        state = VersionState(
            version, LOADING, failed_loads=previous.failed_loads if previous else 0
        )
        self._set(config.name, state)
        fingerprint = directory_fingerprint(path)  # the files this load reads
        start = time.perf_counter()
        try:
            servable = Servable(config.name, version, str(path), self._load(path))
            warmed = self._warmup(servable) if self._warmup else None
        except Exception as error:  # Any load failure is reported, not raised.
            message = f"Failed to load {path}: {error}".splitlines()[0]
            failures = self._retries.failed(
                _key(config.name, version),
                fingerprint,
                f"Failed to load servable version {{name: {config.name} version: "
                f"{version}}}: {message}",
            )
            state = dataclasses.replace(
                state,
                state=END,
                error_code=Code.UNKNOWN,
                error_message=message,
                failed_loads=failures,
            )
            self._set(config.name, state)
            if self._metrics:
                self._metrics.record_load(str(path), False, 0.0)
            return
        self._retries.forget(_key(config.name, version))
        seconds = time.perf_counter() - start
        with self._lock:
            self._states[config.name][version] = VersionState(
                version, AVAILABLE, servable=servable
            )
            available = dict(self._available[config.name])
            available[version] = servable
            self._available[config.name] = available  # swapped in one assignment
        if self._metrics:
            self._metrics.record_load(str(path), True, seconds)
        if self._on_change:
            self._on_change("load")
        logger.info(
            "Loaded servable version {name: %s version: %d} from %s in %.2f s%s",
            config.name,
            version,
            path,
            seconds,
            f"; warmed up with {warmed}" if warmed else "",
        )

    def _unload_version(self, config, version):
        with self._lock:
            self._states[config.name][version] = VersionState(version, UNLOADING)
            available = dict(self._available[config.name])
            available.pop(version, None)
            self._available[config.name] = available
            self._states[config.name][version] = VersionState(version, END)
        if self._on_change:
            self._on_change("unload")
        logger.info(
            "Unloaded servable version {name: %s version: %d}", config.name, version
        )

    def available_versions(self, name):
        return sorted(self._available.get(name, {}))

    def _label_version(self, spec):
        config = self.configs.get(spec.name)
        labels = config.version_labels if config else {}
        if spec.label not in labels:
            raise invalid_argument(f"Unrecognized servable version label: {spec.label}")
        return labels[spec.label]

    def resolve(self, spec):
        """The `Servable` a `ModelSpec` names (TF Serving's GetServableHandle).

        Raises:
            ServingError: NOT_FOUND for an unknown model or version,
                INVALID_ARGUMENT for an unknown label or both a version and a
                label.
        """
        if spec.version is not None and spec.label is not None:
            raise invalid_argument(
                f"Both model version ({spec.version}) and model version label "
                f"({spec.label}) cannot be supplied."
            )
        available = self._available.get(spec.name)
        if available is None:
            raise not_found(f"Servable not found for request: {spec.describe()}")
        version = spec.version
        if spec.label is not None:
            version = self._label_version(spec)
        if version is None:
            if not available:
                raise not_found(f"Servable not found for request: {spec.describe()}")
            return available[max(available)]
        servable = available.get(version)
        if servable is None:
            raise not_found(f"Servable not found for request: {spec.describe(version)}")
        return servable

    def status(self, spec):
        """`VersionState`s for GetModelStatus, newest version first."""
        if spec.version is not None and spec.label is not None:
            self.resolve(spec)  # raises TF Serving's error for the pair
        states = self._states.get(spec.name, {})
        version = spec.version
        if spec.label is not None:
            version = self._label_version(spec)
        if version is not None:
            if version not in states:
                raise not_found(
                    f"Could not find version {version} of model {spec.name}"
                )
            return [states[version]]
        if not states:
            raise not_found(f"Could not find any versions of model {spec.name}")
        return [states[v] for v in sorted(states, reverse=True)]
