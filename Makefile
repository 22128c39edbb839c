# Two entry points do everything on a fresh clone:
#   make demo   create .venv if missing, install what the demo uses (taghead[demo]), run `taghead demo --overwrite`
#               (its outputs go to ./taghead-demo, replacing an earlier demo's)
#   make test   create .venv if missing, install the dev and docs extras, then run ruff, the test suite (with
#               the docs' code blocks) and the strict docs build
# and the documentation site:
#   make docs        build it into site/ (mkdocs build --strict: no warnings, no broken links)
#   make docs-serve  serve it at http://127.0.0.1:8000 with live reload
# CPU-only machine: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu (PyTorch's CPU wheels: no CUDA
# libraries to download; pip takes torch and torchvision from that index and everything else from PyPI).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_INDEX ?=
TORCH_FROM := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
# Material for MkDocs prints a notice about MkDocs 2.0 on every build; it is not a warning of ours.
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo demo-env test env lint bench wheel docs docs-serve clean

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
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,docs]"
	touch $@

demo-env: $(VENV)/.demo

demo: demo-env
	$(BIN)/taghead demo --overwrite

env: $(VENV)/.dev

# One intra-op thread per process: the suite also starts subprocesses (DDP, kill/resume), and
# oversubscribed OpenMP threads on 2 cores cost far more than they give.
test: env
	$(BIN)/ruff check taghead tests benchmarks examples conftest.py docs/_hooks
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q
	$(BIN)/mkdocs build --strict --quiet --site-dir $(CURDIR)/site

docs: env
	$(BIN)/mkdocs build --strict

docs-serve: env
	$(BIN)/mkdocs serve

bench: env
	$(BIN)/python benchmarks/bench_ops.py

# A wheel of this checkout in dist/ (pip install "dist/taghead-<version>-py3-none-any.whl[video]" anywhere).
wheel: | $(BIN)/python
	$(BIN)/pip wheel -q --no-deps -w dist .

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache .hypothesis dist build
