# The two commands of the README, plus helpers. Every target sets up .venv first (idempotent).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-all lint bench

setup:
	@scripts/setup-env.sh

# The end-to-end demo on the shipped SpatialMLLM-tiny model.
demo: setup
	@$(VENV)/bin/spatial-mllm demo

# The whole CI suite (slow and GPU checks excluded; see README).
test: setup
	@scripts/run-tests.sh

# Everything, including checks marked slow.
test-all: setup
	@scripts/run-tests.sh -m "not gpu"

lint: setup
	@$(VENV)/bin/ruff check .

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
