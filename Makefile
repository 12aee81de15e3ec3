# The two commands: `make run` and `make test`. Both set everything up first.
PY      ?= $(shell command -v python3.11 || command -v python3)
VENV    := .venv
SAMVENV := .venv-sam
CKVENV  := .venv-checkov
BIN     := $(VENV)/bin
DEMO    ?= 1
PORT    ?= 3000
export PYTHONPATH := $(CURDIR)/layers/common:$(CURDIR)
export PYTHONDONTWRITEBYTECODE := 1
export SAM_CLI_TELEMETRY := 0

.PHONY: run test unit integration e2e lint checkov build bench soak reconcile clean venv verify-draw

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt layers/common/requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

$(SAMVENV)/.installed: infra/sam-requirements.txt
	$(PY) -m venv $(SAMVENV)
	$(SAMVENV)/bin/pip install -q --upgrade pip
	$(SAMVENV)/bin/pip install -q -r infra/sam-requirements.txt
	touch $@

$(CKVENV)/.installed: infra/checkov-requirements.txt
	$(PY) -m venv $(CKVENV)
	$(CKVENV)/bin/pip install -q --upgrade pip
	$(CKVENV)/bin/pip install -q -r infra/checkov-requirements.txt
	touch $@

## make run [DEMO=0] [PORT=3000] [LOG=INFO]: the local stack on 127.0.0.1, plus the demo story
LOG ?= WARNING
# The senders' EMF metric lines print like logs: only when the logs show (LOG=INFO or DEBUG).
METRICS_OFF = $(if $(filter INFO DEBUG,$(LOG)),false,true)
run: venv
	POWERTOOLS_LOG_LEVEL=$(LOG) POWERTOOLS_METRICS_DISABLED=$(METRICS_OFF) \
		$(BIN)/python -m infra.local serve --port $(PORT) --demo $(DEMO)

## make test: lint (cfn-lint, sam validate, checkov) and build the template, then unit, integration and end-to-end tests
## (in TEST_WORKERS processes, each taking whole test files; TEST_WORKERS=0 runs them in this one)
TEST_WORKERS ?= 2
test: venv lint build
	$(BIN)/python -m pytest -q $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) tests

unit: venv
	$(BIN)/python -m pytest -q tests/unit
integration: venv
	$(BIN)/python -m pytest -q tests/integration
e2e: venv
	$(BIN)/python -m pytest -q tests/e2e

lint: venv $(SAMVENV)/.installed $(CKVENV)/.installed
	$(BIN)/cfn-lint template.yaml
	$(SAMVENV)/bin/sam validate --lint --region us-east-1
	$(CHECKOV)

## make checkov: the template's security checks (a check skipped in template.yaml says why there)
CHECKOV = $(CKVENV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
checkov: $(CKVENV)/.installed
	$(CHECKOV)

build: $(SAMVENV)/.installed
	$(SAMVENV)/bin/sam build --region us-east-1 --build-dir .aws-sam/build --cached --parallel

## make verify-draw RECORD=draw.json [ENTRANTS=entrants.txt]: recompute a draw's winners from its published
## record and entrant list (exit 1 when they do not hold)
verify-draw: venv
	$(BIN)/python -m loyalty.engagement.verify_draw $(RECORD) $(ENTRANTS)

## make bench: the figures of DESIGN.md (call counts and ratios)
bench: venv
	$(BIN)/python -m bench

## make soak [SOAK_ORDERS=300] [SOAK_FAULT_SHARE=0.05] [SOAK_SEED=1] [SOAK_TIMEOUTS=4] [SOAK_WORKERS=8] [SOAK_TIME_SCALE=0.1]:
## orders, refunds, redemptions, reminders and replies through a local stack of its own while a share of
## the functions' AWS calls and of the sends fail; exits 1 unless no point, message or reply was lost or doubled
SOAK_ORDERS ?= 300
SOAK_FAULT_SHARE ?= 0.05
SOAK_SEED ?= 1
SOAK_TIMEOUTS ?= 4
SOAK_WORKERS ?= 8
SOAK_TIME_SCALE ?= 0.1
soak: venv
	$(BIN)/python -m infra.local.soak --orders $(SOAK_ORDERS) --fault-share $(SOAK_FAULT_SHARE) \
		--seed $(SOAK_SEED) --timeouts $(SOAK_TIMEOUTS) --workers $(SOAK_WORKERS) --time-scale $(SOAK_TIME_SCALE)

## make reconcile: prove balance = entries = lots for every member (against $$AWS_ENDPOINT_URL or AWS)
reconcile: venv
	$(BIN)/python -m loyalty.tools.reconcile

clean:
	rm -rf $(VENV) $(SAMVENV) $(CKVENV) .aws-sam .pytest_cache .hypothesis
