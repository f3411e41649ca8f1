# FlowPilot Writeback. Two commands do all set-up: `make dev` (the local stack) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.13 everywhere: pyenv's 3.13 if present, else whatever python3.13 is on PATH.
PYTHON ?= $(shell PYENV_VERSION=3.13.0 pyenv which python3.13 2>/dev/null || command -v python3.13)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `sam build` looks for python3.13 on PATH; the venv provides it.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export SAM_CLI_TELEMETRY := 0
API_PORT ?= 3000

.PHONY: help venv dev demo test lint typecheck unit sam openapi bench clean

help:
	@echo "make dev    - run the local stack (moto + ConnectWise simulator + HTTP API on 127.0.0.1:$(API_PORT))"
	@echo "make test   - ruff, mypy, pytest, sam validate --lint, sam build"
	@echo "make demo   - drive the whole flow against a running 'make dev'"
	@echo "make bench  - benchmarks (prints a table, writes bench-report.json)"
	@echo "make openapi - regenerate docs/openapi.json"

$(STAMP): pyproject.toml layers/flowpilot/requirements.txt
	@test -n "$(PYTHON)" || { echo "python3.13 not found (pyenv install 3.13.0)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

dev: $(STAMP)
	$(BIN)/python -m devstack --port $(API_PORT)

demo: $(STAMP)
	$(BIN)/python -m devstack.demo --api http://127.0.0.1:$(API_PORT)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/flowpilot/flowpilot devstack
	@# every function's module is called app.py, so each gets its own run
	@for f in functions/*/app.py; do $(BIN)/mypy --no-error-summary $$f || exit 1; done

unit: $(STAMP)
	$(BIN)/pytest

sam: $(STAMP)
	$(BIN)/sam validate --lint
	$(BIN)/sam build --parallel

test: lint typecheck unit sam

openapi: $(STAMP)
	$(BIN)/python -m devstack.openapi > docs/openapi.json

bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean:
	rm -rf .aws-sam $(VENV)
