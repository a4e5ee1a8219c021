"""The package's shape: a light `import keras_mtl`, a fast CLI, no import cycle."""

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "keras_mtl"
HEAVY = ("tensorflow", "keras", "keras_tuner", "tensorflow_datasets", "matplotlib")


def _loaded_after(code):
    """The heavy modules that `code` leaves imported, in a fresh interpreter."""
    probe = (
        f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return result.stdout.strip().splitlines()[-1]


def test_import_keras_mtl_loads_nothing_heavy():
    assert _loaded_after("import keras_mtl") == "[]"
    assert _loaded_after("import keras_mtl, keras_mtl.cli") == "[]"


def test_names_import_their_module_on_first_use():
    loaded = _loaded_after(
        "import sys\n"
        "import keras_mtl\n"
        "assert keras_mtl.load_config('shapes').name == 'shapes'\n"
        "assert 'keras_mtl.serving' not in sys.modules\n"
        "assert keras_mtl.serving.ServedModelConfig\n"
        "assert 'keras_mtl.serving' in sys.modules\n"
        "assert 'keras_mtl.plots' not in sys.modules"
    )
    assert "keras_tuner" not in loaded  # (TensorFlow itself loads matplotlib)


def test_every_public_name_resolves():
    import keras_mtl

    for name in keras_mtl.__all__:
        assert getattr(keras_mtl, name) is not None, name
    with pytest.raises(AttributeError, match="no_such_thing"):
        keras_mtl.no_such_thing  # noqa: B018


def test_the_config_command_needs_no_tensorflow_and_answers_fast():
    code = (
        "import time; start = time.perf_counter()\n"
        "from keras_mtl.cli import main\n"
        "assert main(['config', '--preset', 'adult']) == 0\n"
        "import sys; print('seconds', time.perf_counter() - start, file=sys.stderr)"
    )
    assert _loaded_after(code) == "[]"
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "keras_mtl.cli", "--help"],
        capture_output=True,
        check=True,
    )
    # The interpreter's own start-up included; TensorFlow alone takes ~3 s.
    assert time.perf_counter() - start < 1.5


def _module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path, modules):
    """keras_mtl modules that `path` imports when it is imported itself."""
    found = set()
    body = list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.If | ast.Try):  # still module level
            body.extend(node.body + node.orelse + getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                body.extend(handler.body)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module in modules:
            submodules = {f"{node.module}.{a.name}" for a in node.names}
            found.update(submodules & set(modules))
            if not submodules <= set(modules):  # names defined in node.module
                found.add(node.module)
    # Importing a submodule runs its packages' __init__ first, whatever it says.
    module = _module_name(path)
    return {name for name in found if not module.startswith(name + ".")}


def find_import_cycle(graph):
    """One cycle of `graph` (module -> imported modules) as a list, or None."""
    state = {}

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state:
                cycle = visit(target, [*stack, target])
                if cycle:
                    return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module, [module])
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [
        "a",
        "b",
        "c",
        "a",
    ]
    assert find_import_cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None


def test_no_import_cycle_inside_keras_mtl():
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {
        module: _top_level_imports(path, paths) - {module}
        for module, path in paths.items()
    }
    assert find_import_cycle(graph) is None
