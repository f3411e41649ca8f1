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
PSA ?= connectwise
API_PORT ?= 3000
MOTO_PORT ?= 3001
export API_PORT MOTO_PORT
N ?= 200
CHUNK ?= 250
SEED ?=

.PHONY: help venv dev demo invoke test lint typecheck unit tests browser sam openapi bench campaign web-deploy clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml layers/flowpilot/requirements.txt
	@test -n "$(PYTHON)" || { echo "python3.13 not found (pyenv install 3.13.0)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv (every target does it on first run)

dev: $(STAMP) ## the local stack: HTTP API + console on 127.0.0.1:$API_PORT (3000), moto on $MOTO_PORT (3001)
	$(BIN)/python -m devstack --port $(API_PORT) --moto-port $(MOTO_PORT)

demo: $(STAMP) ## the whole flow against a running `make dev` (same API_PORT), as a transcript; PSA=autotask|halopsa
	$(BIN)/python -m devstack.demo --api http://127.0.0.1:$(API_PORT) --psa $(PSA)

invoke: $(STAMP) ## run a function on an event like `sam local invoke`: make invoke EVENT=events/x.json [FN=Id]
	@test -n "$(EVENT)" || { echo "usage: make invoke EVENT=events/<file>.json [FN=SessionsFunction]"; exit 2; }
	$(BIN)/python -m devstack.invoke $(if $(FN),--function $(FN)) $(EVENT)

lint: $(STAMP) ## ruff check and ruff format --check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## mypy: the shared layer, devstack, each function
	$(BIN)/mypy layers/flowpilot/flowpilot devstack
	@# every function's module is called app.py, so each gets its own run
	@for f in functions/*/app.py; do $(BIN)/mypy --no-error-summary $$f || exit 1; done

unit: $(STAMP) ## unit tests only (tests/unit, seconds)
	$(BIN)/pytest tests/unit

browser: ## Chromium for the console tests (the one on PATH, else Debian's package as root, else Playwright's)
	@bash devstack/ensure_chromium.sh

tests: $(STAMP) browser ## every test: unit, integration (incl. the newcomer check), contract, web, campaign
	$(BIN)/pytest

sam: $(STAMP) ## sam validate --lint and sam build
	$(BIN)/sam validate --lint
	$(BIN)/sam build --parallel
	$(BIN)/python -m tests.bench.built_layer

test: lint typecheck tests sam ## everything CI runs: lint, typecheck, all tests, sam

openapi: $(STAMP) ## regenerate docs/openapi.json
	$(BIN)/python -m devstack.openapi > docs/openapi.json

bench: $(STAMP) ## benchmarks: prints a table, writes bench-report.json
	$(BIN)/python -m tests.bench

campaign: $(STAMP) ## the fault campaign alone: make campaign N=1000 [SEED=…] [CHUNK=250]; prints each summary
	@# Plans run in processes of CHUNK: the emulators keep every item and execution, and one process
	@# holding a thousand plans' worth outgrew this machine's memory.
	@set -e; for start in $$(seq 0 $(CHUNK) $$(( $(N) - 1 ))); do \
	  end=$$(( start + $(CHUNK) - 1 )); if [ $$end -ge $(N) ]; then end=$$(( $(N) - 1 )); fi; \
	  echo "plans $$start-$$end of $(N)"; \
	  FLOWPILOT_CAMPAIGN_ONLY=$$(seq -s, $$start $$end) $(if $(SEED),FLOWPILOT_CAMPAIGN_SEED=$(SEED)) \
	    $(BIN)/pytest tests/campaign -s -q; \
	done

STACK ?= flowpilot-writeback-dev
web-deploy: ## after `sam deploy`: upload web/, write the AWS config.json, invalidate CloudFront (STACK=…)
	@out() { aws cloudformation describe-stacks --stack-name $(STACK) --query "Stacks[0].Outputs[?OutputKey=='$$1'].OutputValue" --output text; }; \
	bucket=$$(out ConsoleBucketName); dist=$$(out ConsoleDistributionId); url=$$(out ConsoleDistributionUrl); \
	client=$$(out ConsoleUserPoolClientId); domain=$$(out ConsoleLoginDomain); \
	aws s3 sync web/ s3://$$bucket --delete --exclude config.json && \
	printf '{"mode":"cognito","cognito":{"domain":"%s","client_id":"%s","redirect_uri":"%s","token_endpoint":"/oauth2/token"}}\n' "$$domain" "$$client" "$$url" \
	  | aws s3 cp - s3://$$bucket/config.json --content-type application/json --cache-control no-cache && \
	aws cloudfront create-invalidation --distribution-id $$dist --paths '/*' >/dev/null && echo "Console: $$url"; \
	cb=$$(aws cloudformation describe-stacks --stack-name $(STACK) --query "Stacks[0].Parameters[?ParameterKey=='ConsoleUrl'].ParameterValue" --output text); \
	[ "$$cb" = "$$url" ] || echo "Register the login callback once: sam deploy --config-env dev --parameter-overrides Stage=dev ConsoleUrl=$$url"

clean: ## remove .aws-sam and the virtualenv
	rm -rf .aws-sam $(VENV)
