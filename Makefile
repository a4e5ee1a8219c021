# keras-mtl: `make demo` trains and exports the default model, `make test` runs
# the tests. Both create .venv on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
# pytest-xdist processes for make test (CONTRIBUTING.md): much of the suite is
# single-threaded tracing and process start-up, which leaves a core idle.
TEST_WORKERS ?= 2

.PHONY: venv demo test lint format bench gpu-check notebooks clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py keras_mtl/serving/_json_numbers.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: venv
	$(BIN)/keras-mtl train --preset shapes

test: venv lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

bench: venv
	$(BIN)/python benchmarks/run_all.py

# MirroredStrategy on 1 and N devices (GPUs, or 2 logical CPUs): replica
# invariance and images/s -> benchmarks/results/gpu.json (docs/training.md, "The GPU check").
gpu-check: venv
	$(BIN)/python benchmarks/gpu_check.py

notebooks: venv
	$(BIN)/python notebooks/run_notebooks.py

lint: venv
	$(BIN)/ruff check keras_mtl tests benchmarks notebooks

format: venv
	$(BIN)/ruff format keras_mtl tests

clean:
	rm -rf runs saved_models/*/ .pytest_cache .ruff_cache
