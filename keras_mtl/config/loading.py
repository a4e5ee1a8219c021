"""Reading a `Config`: presets, TOML files, dicts and `--set` overrides.

Unknown keys and wrong types raise `ValueError` naming the key, the file, what
was expected and what was received; `validation.validate` then checks values.
"""

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path

from keras_mtl.config.schema import Config
from keras_mtl.config.validation import validate

PRESETS_DIR = Path(__file__).parent / "presets"


def list_presets():
    """Names of the presets shipped with keras-mtl."""
    return sorted(path.stem for path in PRESETS_DIR.glob("*.toml"))


def load_config(preset_or_path="shapes", overrides=()):
    """Reads a preset or a TOML file and applies `section.key=value` overrides.

    An existing file is read as a file, then a preset's name as that
    preset; a directory is never read as a config. The command line does not guess: `--preset NAME` calls
    `load_preset`, `--config FILE` calls `load_config_file`.

    Args:
        preset_or_path: A preset name (`"shapes"`, `"adult"`, `"cifar100"`) or
            the path of a TOML file.
        overrides: Strings such as `"train.epochs=1"` or
            `"tasks.fine.weight=0.5"` (a task by name or by index). Values are
            read as TOML, so `data.source=csv` and `data.source="csv"` agree.

    Returns:
        A validated `Config`.

    Example:

    ```python
    config = load_config("adult", ["data.path=/data/adult.csv"])
    ```
    """
    name = str(preset_or_path)
    path = Path(name)
    if path.is_file() or (
        name not in list_presets() and (path.suffix or path.is_dir())
    ):
        return load_config_file(path, overrides)
    return load_preset(name, overrides)


def load_preset(name, overrides=()):
    """The `Config` of preset `name` (`keras_mtl/config/presets/<name>.toml`)."""
    if name not in list_presets():
        raise ValueError(
            f"Unknown preset {name!r}. Expected one of {list_presets()}, or the "
            "path of a TOML file (keras-mtl: --config FILE instead of --preset). "
            f"Received: preset={name!r}"
        )
    return load_config_file(PRESETS_DIR / f"{name}.toml", overrides)


def load_config_file(path, overrides=()):
    """The `Config` of the TOML file at `path`, with `overrides` applied."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"Config file {path} is a directory; expected a TOML file such as "
            f"configs/run.toml, or a preset name ({list_presets()})."
        )
    if not path.is_file():
        raise ValueError(f"Config file not found: {path}")
    try:
        raw = tomllib.loads(_read_utf8(path, "config file"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None
    return config_from_dict(raw, str(path), overrides)


def _read_utf8(path, what):
    """The text of `path`, read as UTF-8 (a byte-order mark is dropped)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ValueError(f"{path}: cannot read the {what}: {error.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(
            f"{path}: a {what} must be UTF-8 text, but line {line} holds byte "
            f"0x{data[error.start]:02x}. Save it as UTF-8 (e.g. iconv -f latin1 "
            f"-t utf-8)."
        ) from None


def config_from_dict(raw, source="<dict>", overrides=()):
    """Builds a validated `Config` from a dict such as `Config.to_dict()`."""
    raw = _copy_tree(raw)
    for override in overrides:
        _apply_override(raw, override)
    config = _build(Config, raw, "", source)
    validate(config, source)
    return config


def _copy_tree(value):
    if isinstance(value, dict):
        return {key: _copy_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_tree(item) for item in value]
    return value


def _parse_value(text):
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_override(raw, override):
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(
            f"--set: expected KEY=VALUE such as train.epochs=3. Received: {override!r}"
        )
    value = _parse_value(text.strip())
    parts = key.split(".")
    node = raw
    if parts[0] == "tasks":
        tasks = raw.setdefault("tasks", [])
        if len(parts) != 3:
            raise ValueError(
                f"--set {key}: expected tasks.<name or index>.<key>, such as "
                f"tasks.0.weight=2. Received: {override!r}"
            )
        selector = parts[1]
        names = [task.get("name") for task in tasks]
        if selector.isdigit() and int(selector) < len(tasks):
            node = tasks[int(selector)]
        elif selector in names:
            node = tasks[names.index(selector)]
        else:
            raise ValueError(
                f"--set {key}: no task {selector!r}. Known tasks: {names} "
                f"(or their indices 0..{len(tasks) - 1})."
            )
        parts = parts[2:]
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set {key}: {part!r} is not a section.")
        node = child
    node[parts[-1]] = value


def _type_name(annotation):
    if typing.get_origin(annotation) is list:
        return f"a list of {typing.get_args(annotation)[0].__name__}"
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        dict: "a table",
    }.get(annotation, "a string")


def _check_type(value, annotation):
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(_check_type(v, item) for v in value)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, annotation)


def _build(cls, raw, prefix, source):
    if not isinstance(raw, dict):
        raise ValueError(
            f"{source}: [{prefix.rstrip('.')}] must be a table. Received: {raw!r}"
        )
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
        raise ValueError(
            f"Unknown config key {prefix + unknown[0]!r} in {source}. Known keys "
            f"in {where}: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in raw.items():
        annotation = hints[name]
        key = prefix + name
        if dataclasses.is_dataclass(annotation):
            values[name] = _build(annotation, value, key + ".", source)
        elif typing.get_origin(annotation) is list and dataclasses.is_dataclass(
            typing.get_args(annotation)[0]
        ):
            if not isinstance(value, list):
                raise ValueError(
                    f"{source}: `{key}` must be an array of tables ([[{key}]]). "
                    f"Received: {value!r}"
                )
            item_cls = typing.get_args(annotation)[0]
            values[name] = [
                _build(item_cls, item, f"{key}.{index}.", source)
                for index, item in enumerate(value)
            ]
        else:
            if isinstance(annotation, types.GenericAlias | type) and not _check_type(
                value, annotation
            ):
                raise ValueError(
                    f"{source}: `{key}` must be {_type_name(annotation)}. "
                    f"Received: {key}={value!r}"
                )
            if annotation is float:
                value = float(value)
            values[name] = value
    return cls(**values)


def resolve_path(path):
    """Expands `~` and `$VARS` in a path from a config."""
    return Path(os.path.expandvars(os.path.expanduser(path)))
