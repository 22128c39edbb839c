# Two entry points do everything on a fresh clone:
#   make demo   create .venv if missing, then run the embedded demo (taghead demo)
#   make test   create .venv if missing, then run ruff, the test suite (with the docs' code blocks) and
#               the strict docs build
# and the documentation site:
#   make docs        build it into site/ (mkdocs build --strict: no warnings, no broken links)
#   make docs-serve  serve it at http://127.0.0.1:8000 with live reload
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Material for MkDocs prints a notice about MkDocs 2.0 on every build; it is not a warning of ours.
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test env lint bench docs docs-serve clean

$(BIN)/taghead: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,docs]"
	touch $(BIN)/taghead

env: $(BIN)/taghead

demo: env
	$(BIN)/taghead demo

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

clean:
	rm -rf $(VENV) site .pytest_cache .ruff_cache .hypothesis
