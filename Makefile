# Two commands for a newcomer: `make smoke` runs the pipeline on its embedded CPU default,
# `make test` runs the test suite. Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned to its CPU build here; on a GPU machine install the project into an
# environment that already has a CUDA build of torch (see README).
TORCH_INDEX ?=

.PHONY: smoke test lint format report clean

$(VENV)/.installed: pyproject.toml requirements/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) -r requirements/cpu.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

smoke: $(VENV)/.installed
	$(BIN)/snakemake --cores 2

test: $(VENV)/.installed
	$(BIN)/python -m pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1

format: $(VENV)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/snakefmt Snakefile workflow/rules

report: $(VENV)/.installed
	$(BIN)/snakemake --cores 2 --report results/report.html

clean:
	rm -rf results logs .snakemake
