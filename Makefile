# Two entry points do everything on a fresh clone:
#   make demo   create .venv if missing, install what the demo uses (taghead[demo]), run `taghead demo --overwrite`
#               (its outputs go to ./taghead-demo, replacing an earlier demo's)
#   make test   create .venv if missing, install the dev extras, then run ruff and the test suite
# CPU-only machine: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu (PyTorch's CPU wheels: no CUDA
# libraries to download; pip takes torch and torchvision from that index and everything else from PyPI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)

.PHONY: demo demo-env test env lint bench wheel clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The tested PyTorch pair first (constraints.txt), from TORCH_INDEX when given; the extras do not replace it.
$(VENV)/.torch: constraints.txt | $(BIN)/python
	$(BIN)/pip install -q $(TORCH_FROM) -c constraints.txt torch torchvision
	touch $@

$(VENV)/.demo: pyproject.toml constraints.txt $(VENV)/.torch
	$(BIN)/pip install -q -c constraints.txt -e ".[demo]"
	touch $@

$(VENV)/.dev: pyproject.toml constraints.txt $(VENV)/.torch
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

demo-env: $(VENV)/.demo

demo: demo-env
	$(BIN)/taghead demo --overwrite

env: $(VENV)/.dev

# One intra-op thread per process: the suite also starts subprocesses (DDP, kill/resume), and
# oversubscribed OpenMP threads on 2 cores cost far more than they give.
test: env
	$(BIN)/ruff check taghead tests benchmarks examples
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

bench: env
	$(BIN)/python benchmarks/bench_ops.py

# A wheel of this checkout in dist/ (pip install "dist/taghead-<version>-py3-none-any.whl[video]" anywhere).
wheel: | $(BIN)/python
	$(BIN)/pip wheel -q --no-deps -w dist .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis dist build
