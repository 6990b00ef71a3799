# The two commands a user needs are `make demo` and `make test`; every other target is a step of those.
# All set-up happens here: nothing is installed by hand. Built things live in ignored folders:
#   .venv/        development / training / test environment (Python 3.11, CPU torch from local disk)
#   build/        model artifacts, embeddings cache, layers, stack outputs
#   .localcloud/  LocalStack install and state (its own Python 3.13 venv, DynamoDB Local, Java)

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON311 ?= $(shell command -v python3.11 || echo /root/.pyenv/versions/3.11.7/bin/python3.11)
VENV      := .venv
PY        := $(VENV)/bin/python
PIP       := $(PY) -m pip --quiet
STAMP     := $(VENV)/.installed
MANIFEST  := build/models/manifest.json
LOCALCLOUD := python3 -m infra.localstack.localcloud
export DATA_HOME ?= $(abspath ../shared/data)
export PYTHONUNBUFFERED := 1
# The local cloud: the same SAM/boto3 commands as on AWS, pointed at LocalStack with dummy credentials.
# checkov's IAM policies (tests/security/test_security.py runs the same set)
IAM_CHECKS := CKV_AWS_40,CKV_AWS_60,CKV_AWS_61,CKV_AWS_62,CKV_AWS_63,CKV_AWS_107,CKV_AWS_108,CKV_AWS_109,CKV_AWS_110,CKV_AWS_111
LOCAL_AWS := AWS_ENDPOINT_URL=http://127.0.0.1:$(or $(LOCALCLOUD_PORT),4566) AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
             AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1

.PHONY: help venv models models-if-missing test test-slow test-gate test-unit lint audit fmt localcloud up down status deploy demo clean distclean \
        bench bench-quick images

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt pyproject.toml
	@echo "==> creating $(VENV) with $(PYTHON311)"
	@test -x "$(PYTHON311)" || { echo "Python 3.11 not found: install it (pyenv install 3.11) or set PYTHON311=..."; exit 1; }
	$(PYTHON311) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install torch==2.13.0
	$(PIP) install -r requirements-dev.txt
	$(PIP) install --no-deps -e .
	@touch $@

venv: $(STAMP)  ## create the development environment

models: $(STAMP)  ## build encoder (fp32 + int8), embeddings, the four heads and their ensemble (QUICK=1: subset; TUNE=0: no search)
	$(PY) -m training.build

models-if-missing: $(STAMP)
	@if [ -f $(MANIFEST) ]; then echo "==> models present ($(MANIFEST))"; else QUICK=1 $(MAKE) --no-print-directory models; fi

images: $(STAMP) models-if-missing  ## OCI images without Docker (buildah, Debian base): build/images/topicserve-cpu.oci.tar; GPU=1: + gpu
	$(PY) -m containers.build

test: $(STAMP) models-if-missing images localcloud  ## the whole suite: unit, functional, security and LocalStack end-to-end tests
	$(PY) -m pytest tests -m "not slow and not network"

test-slow: $(STAMP) models-if-missing localcloud  ## the long runs: 10,000 property cases per route, 5,000 SQS requests under faults, 10-minute soak; fresh Hypothesis seed, printed (HYPOTHESIS_SEED=<seed> reruns one)
	@seed=$${HYPOTHESIS_SEED:-$$($(PY) -c 'import secrets; print(secrets.randbits(32))')}; \
	echo "Hypothesis seed $$seed (rerun with: make test-slow HYPOTHESIS_SEED=$$seed)"; \
	$(PY) -m pytest tests -m slow -s --hypothesis-profile=fresh --hypothesis-seed=$$seed

test-gate: $(STAMP) models-if-missing localcloud  ## label feedback closes the loop (~15 min): every 20NG test text served and labelled, live accuracy per version, the gate rolling back a worse canary and promoting an equal one on labels
	$(PY) -m pytest tests/e2e/app/test_gate_on_labels.py -m slow -s

test-unit: $(STAMP)  ## fast unit tests only
	$(PY) -m pytest tests/unit

lint: $(STAMP) localcloud  ## ruff, mypy, cfn-lint, sam validate --lint, IAM least privilege (SAM transform + checkov)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy  # strict, every folder but tests/: [tool.mypy] in pyproject.toml
	$(VENV)/bin/mypy --config-file infra/localstack/executor/pyproject.toml  # LocalStack's executor plugin
	$(VENV)/bin/cfn-lint template.yaml
	AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 .localcloud/sam-venv/bin/sam validate --lint --template template.yaml
	.localcloud/sam-venv/bin/python infra/lint_iam.py --out build/lint/template.cfn.json
	$(VENV)/bin/checkov -f build/lint/template.cfn.json --framework cloudformation --compact --quiet --skip-download \
	    --check $(IAM_CHECKS)

audit: $(STAMP)  ## pip-audit of the serving layer's runtime dependencies (needs pypi.org / osv.dev)
	$(PY) -m pytest tests/security -m network

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

localcloud:  ## install the local cloud into .localcloud (LocalStack, DynamoDB Local, Java, runtimes, SAM CLI); idempotent
	$(LOCALCLOUD) install

up:  ## start the local cloud (LocalStack + local Lambda executor) on 127.0.0.1:4566
	$(LOCALCLOUD) up

down:  ## stop the local cloud (by PID, children included)
	$(LOCALCLOUD) down

status:  ## is the local cloud running?
	$(LOCALCLOUD) status

deploy: $(STAMP) models-if-missing images localcloud up  ## sam build + sam deploy into the local cloud, register models, write build/stack.json
	$(LOCAL_AWS) $(PY) infra/deploy.py $(foreach p,$(PARAMS),--param $(p))

# From nothing the full model build is most of a demo's time (embedding 19k texts, fitting the heads: ~11 min
# of ~20 on 2 cores), so the demo serves whatever models are built and otherwise builds the QUICK subset (~2
# min); DEMO_MODELS=full builds and serves the full set (or `make models` first).
DEMO_MODELS ?= quick
demo: $(STAMP) localcloud  ## the whole thing end to end: models, local cloud, deploy, HTTP + SQS requests, results (DEMO_MODELS=full)
	@if [ "$(DEMO_MODELS)" = full ]; then \
	    [ -f $(MANIFEST) ] && ! grep -q '"quick": true' $(MANIFEST) || TUNE=0 $(MAKE) --no-print-directory models; \
	else $(MAKE) --no-print-directory models-if-missing; fi
	$(MAKE) --no-print-directory up
	$(MAKE) --no-print-directory deploy
	$(LOCAL_AWS) $(PY) demo/run.py

bench-quick: $(STAMP) models-if-missing images localcloud  ## benchmark subset (~5 min quiet, ~8 busy): bench/results/quick.*, REPORT.md
	$(LOCAL_AWS) $(PY) -m bench.run --quick

bench: $(STAMP) models-if-missing images localcloud  ## the full benchmark set (~45 min): bench/results/full.*, REPORT.md
	$(LOCAL_AWS) $(PY) -m bench.run

clean:  ## remove build outputs (keeps the venvs and the local cloud install)
	rm -rf build .aws-sam

distclean: down clean  ## remove everything the Makefile installed
	rm -rf $(VENV) .localcloud
