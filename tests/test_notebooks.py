"""Every notebook in notebooks/ runs top to bottom and is committed with outputs."""

import re
import shutil
import sys

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from conftest import REPO, adult_csv_path

NOTEBOOKS = REPO / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))

from run_notebooks import execute  # noqa: E402

ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
NAMES = [path.name for path in ALL]
# Notebooks that read the UCI Adult CSV ($KERAS_MTL_ADULT_CSV).
NEEDS_ADULT = {"05_tabular.ipynb"}
# Set while the tests run a notebook: a slow one (its first cell says so) then
# runs on tiny data.
QUICK = "KERAS_MTL_NOTEBOOK_QUICK"


def test_there_are_notebooks():
    assert NAMES == [
        "01_quickstart.ipynb",
        "02_loss_weighting.ipynb",
        "03_tuning_loss_weights.ipynb",
        "04_serving.ipynb",
        "05_tabular.ipynb",
        "06_backbones_on_image_files.ipynb",
        "07_architectures.ipynb",
    ]


def test_the_readme_lists_every_notebook():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Notebooks", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"`(\d\d_\w+\.ipynb)`", section)
    assert listed == NAMES


@pytest.mark.parametrize("path", ALL, ids=NAMES)
def test_committed_with_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, "a notebook without code"
    # One run of a fresh kernel, top to bottom: 1, 2, 3, ...
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), "run `make notebooks` and commit"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert not errors
    assert path.stat().st_size < 1_500_000, "keep the outputs small"


def _scratch_copy(tmp_path):
    """The notebooks alone in a scratch directory: their runs and exports stay there."""
    work = tmp_path / "notebooks"
    shutil.copytree(
        NOTEBOOKS,
        work,
        ignore=shutil.ignore_patterns(
            "runs", "saved_models", ".ipynb_checkpoints", "__pycache__"
        ),
    )
    return work


@pytest.mark.slow
@pytest.mark.parametrize("path", ALL, ids=NAMES)
def test_runs_top_to_bottom(path, tmp_path, monkeypatch):
    # A notebook whose full run takes minutes reads this and shrinks its data and
    # epochs; every cell still runs. `make notebooks` makes the committed outputs.
    monkeypatch.setenv(QUICK, "1")
    if path.name in NEEDS_ADULT:
        csv = adult_csv_path()
        if not csv.is_file():
            pytest.skip(f"UCI Adult CSV not found at {csv}; set KERAS_MTL_ADULT_CSV")
        monkeypatch.setenv("KERAS_MTL_ADULT_CSV", str(csv.resolve()))
    work = _scratch_copy(tmp_path)
    executed = execute(work / path.name, cwd=work)
    outputs = [
        o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs
    ]
    assert not [o for o in outputs if o.output_type == "error"]


def test_the_tabular_notebook_says_where_to_get_the_data(tmp_path, monkeypatch):
    missing = tmp_path / "no-such-dir" / "adult.csv"
    monkeypatch.setenv("KERAS_MTL_ADULT_CSV", str(missing))
    work = _scratch_copy(tmp_path)
    with pytest.raises(CellExecutionError) as raised:
        execute(work / "05_tabular.ipynb", cwd=work)
    message = str(raised.value)
    assert "FileNotFoundError" in message
    assert str(missing) in message
    assert "https://archive.ics.uci.edu/dataset/2/adult" in message
    assert "KERAS_MTL_ADULT_CSV" in message
