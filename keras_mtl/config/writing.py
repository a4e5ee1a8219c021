"""TOML text from a config's dict, which `load_config` reads back unchanged."""


def dict_to_toml(tree):
    """`tree` (`Config.to_dict()`) as TOML: scalars, then tables, then arrays."""
    lines = []
    scalars = {k: v for k, v in tree.items() if not isinstance(v, dict | list)}
    scalars.update(
        {k: v for k, v in tree.items() if isinstance(v, list) and not _is_tables(v)}
    )
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in tree.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
        elif isinstance(value, list) and _is_tables(value):
            for table in value:
                lines.append(f"\n[[{key}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"Cannot write {value!r} as TOML")


def _is_tables(value):
    return bool(value) and all(isinstance(item, dict) for item in value)
