"""Executes the notebooks in place, top to bottom in a fresh kernel.

    python notebooks/run_notebooks.py [NAME.ipynb ...]

`make notebooks` runs it to regenerate the committed outputs; the tests run
the same `execute` on a copy. Each notebook runs with `notebooks/` as its
working directory, as Jupyter does.
"""

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent
CELL_TIMEOUT = 900
# TensorFlow's C++ start-up lines (oneDNN, CUDA drivers) go to the terminal that
# runs the kernel, as in classic Jupyter, not into the committed outputs.
KERNEL_ARGUMENTS = ["--IPKernelApp.capture_fd_output=False"]


def execute(path, output=None, cwd=NOTEBOOKS):
    """Runs the notebook at `path`; writes it with outputs to `output`."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        extra_arguments=KERNEL_ARGUMENTS,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    nbformat.write(notebook, output or path)
    return notebook


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    args = parser.parse_args()
    paths = [NOTEBOOKS / name for name in args.names] or sorted(
        NOTEBOOKS.glob("*.ipynb")
    )
    for path in paths:
        start = time.perf_counter()
        execute(path)
        print(f"{path.name}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
