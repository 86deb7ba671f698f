# Two commands work on a fresh machine: `make train` and `make test`. Each creates .venv and
# installs the project first (once; again when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install train test test-slow test-all benchmarks clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Train the default run (CNN on scikit-learn digits, offline). Extra overrides: make train ARGS="model=dense"
train: $(STAMP)
	$(PY) train.py $(ARGS)

## Default test suite (< 10 min on 2 cores)
test: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

## Long tests (real-data training, compile, SLURM-local launcher)
test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

benchmarks: $(STAMP)
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/mnist_time_to_accuracy.py
	$(PY) benchmarks/fusion_ablation.py
	$(PY) benchmarks/gan_quality.py
	$(PY) benchmarks/summarization_throughput.py
	$(PY) benchmarks/summarization_quality.py

clean:
	rm -rf logs/train logs/eval .pytest_cache
