# Two entry points do everything on a fresh clone:
#   make demo   create .venv if missing, then run the embedded demo (taghead demo)
#   make test   create .venv if missing, then run ruff and the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test env lint bench clean

$(BIN)/taghead: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt torch torchvision
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(BIN)/taghead

env: $(BIN)/taghead

demo: env
	$(BIN)/taghead demo

# One intra-op thread per process: the suite also starts subprocesses (DDP, kill/resume), and
# oversubscribed OpenMP threads on 2 cores cost far more than they give.
test: env
	$(BIN)/ruff check taghead tests benchmarks examples
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

bench: env
	$(BIN)/python benchmarks/bench_ops.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
