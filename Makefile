# filewcount.gitops: every target creates or reuses .venv and installs the pinned requirements it needs.
# Nothing is assumed on the machine but python3, make and git (and, for make manifests and make test, Node.js with npm).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PLAYBOOK := $(BIN)/ansible-playbook
# Extra arguments for ansible-playbook, e.g. make bootstrap ARGS="-e gitops_mode=github"
ARGS ?=
# Where the pinned upstream schemas live (CRDs, chart values); see shared/schemas/README.md.
FILEWCOUNT_SCHEMAS_DIR ?= $(abspath ../shared/schemas)
export FILEWCOUNT_SCHEMAS_DIR
export ANSIBLE_CONFIG := $(abspath ansible.cfg)
# Where tests/harness/build-testbin.sh keeps the harness programs it builds from their Go modules, per version.
FILEWCOUNT_TESTBIN_DIR ?= $(or $(FILEWCOUNT_CACHE_DIR),$(HOME)/.cache/filewcount-gitops)/testbin
export FILEWCOUNT_TESTBIN_DIR
# make test-cluster keeps its cluster here (certificates, etcd data, logs, kubeconfig).
TEST_CLUSTER_DIR ?= $(abspath tests/output/test-cluster)

RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
# Grafana's LogQL grammar (npm @grafana/lezer-logql, pinned by tests/manifests/logql/package-lock.json), installed
# by `npm ci` into .venv/logql so that no node_modules lands in the work tree; tests/manifests/test_logs.py uses it.
LOGQL_DIR := $(VENV)/logql
LOGQL_STAMP := $(LOGQL_DIR)/.installed

.PHONY: help venv venv-test bootstrap teardown purge backup restore load-test status sync upgrade \
	test lint sanity units manifests molecule testbin test-cluster test-cluster-down test-e2e benchmark schemas docs \
	changelog clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -qq --disable-pip-version-check -r requirements.txt -c constraints.txt
	@touch $@

$(TEST_STAMP): $(RUNTIME_STAMP) requirements-test.txt constraints.txt
	$(BIN)/python -m pip install -qq --disable-pip-version-check -r requirements-test.txt -c constraints.txt
	@touch $@

venv: $(RUNTIME_STAMP) ## Create .venv with the runtime requirements
venv-test: $(TEST_STAMP) ## Create .venv with the test requirements

$(LOGQL_STAMP): tests/manifests/logql/package.json tests/manifests/logql/package-lock.json | $(BIN)/python
	@command -v npm >/dev/null || { echo "make: npm (Node.js) is needed to install the LogQL parser of the manifest tests"; exit 1; }
	mkdir -p $(LOGQL_DIR)
	cp tests/manifests/logql/package.json tests/manifests/logql/package-lock.json $(LOGQL_DIR)/
	cd $(LOGQL_DIR) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# --- The product -------------------------------------------------------------------------------------------

bootstrap: venv ## Create the kind cluster, bootstrap Flux and wait until everything works
	$(PLAYBOOK) playbooks/bootstrap.yml $(ARGS)

teardown: venv ## Delete the cluster and everything bootstrap started outside it
	$(PLAYBOOK) playbooks/teardown.yml $(ARGS)

purge: venv ## Teardown, and also remove caches and persisted data
	$(PLAYBOOK) playbooks/teardown.yml -e teardown_purge=true $(ARGS)

load-test: venv ## Run the ab load test and write a report (results.json, report.md, chart.png)
	$(PLAYBOOK) playbooks/load_test.yml $(ARGS)

backup: venv ## Back up Prometheus (TSDB snapshot), Grafana and Loki data: make backup [BACKUP_NAME=name]
	$(PLAYBOOK) playbooks/backup.yml $(if $(BACKUP_NAME),-e backup_name=$(BACKUP_NAME)) $(ARGS)

restore: venv ## Restore a backup, then bootstrap onto it: make restore BACKUP=<folder>
	@test -n "$(BACKUP)" || { echo "Name the backup to restore, for example: make restore BACKUP=$${FILEWCOUNT_STATE_DIR:-$${XDG_STATE_HOME:-$$HOME/.local/state}/filewcount-gitops}/backups/<name>"; exit 2; }
	$(PLAYBOOK) playbooks/restore.yml -e restore_backup=$(abspath $(BACKUP)) $(ARGS)
	$(PLAYBOOK) playbooks/bootstrap.yml $(ARGS)

status: venv ## Print Flux, filewcount, HPA and metrics status
	$(PLAYBOOK) playbooks/status.yml $(ARGS)

sync: venv ## Push the current commit to the sync source and ask Flux to reconcile now
	$(PLAYBOOK) playbooks/sync.yml $(ARGS)

upgrade: venv ## Change the filewcount image tag through GitOps: make upgrade TAG=2.0
	@test -n "$(TAG)" || { echo "Set the image tag to roll out, for example: make upgrade TAG=2.0"; exit 2; }
	$(PLAYBOOK) playbooks/upgrade.yml -e filewcount_image_tag=$(TAG) $(ARGS)

# --- Tests (make test is what CI runs) ---------------------------------------------------------------------

test: lint sanity units manifests molecule ## The whole offline test suite
	@echo "make test: lint, sanity, units, manifests and molecule passed"

lint: venv-test ## ansible-lint (production profile), yamllint, ruff, changelog fragments
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --offline
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/antsibull-changelog lint
	$(BIN)/python scripts/role_docs.py --check
	@for p in playbooks/*.yml; do $(PLAYBOOK) --syntax-check "$$p" >/dev/null || exit 1; done; \
		echo "syntax-check: every playbook passed"

sanity: venv-test ## ansible-test sanity, offline, from a temporary ansible_collections tree
	VENV=$(abspath $(VENV)) bash scripts/sanity.sh

units: venv-test ## Unit tests of plugins, harness and playbook logic
	$(BIN)/pytest tests/unit -q -p no:cacheprovider

manifests: venv-test testbin $(LOGQL_STAMP) ## Validate the GitOps tree under kube/ offline (kustomize, schemas, chart values, policy)
	$(BIN)/pytest tests/manifests -q -p no:cacheprovider

testbin: ## Build the harness programs (etcd, Kubernetes, kwok, metrics-server, Flux, Helm, KEDA, amtool, promtool) from their Go modules, once per version
	bash tests/harness/build-testbin.sh

test-cluster: venv-test testbin ## Start a harness cluster to explore by hand and print its KUBECONFIG export line
	$(BIN)/python tests/harness/cluster.py start --state-dir $(TEST_CLUSTER_DIR) --kubeconfig $(TEST_CLUSTER_DIR)/kubeconfig
	@echo "export KUBECONFIG=$(TEST_CLUSTER_DIR)/kubeconfig"
	@echo "kubectl $$(grep '^KUBERNETES_VERSION=' tests/harness/versions.env | cut -d= -f2): $$(bash tests/harness/build-testbin.sh --print-dir)/kubectl-$$(grep '^KUBERNETES_VERSION=' tests/harness/versions.env | cut -d= -f2)/kubectl"
	@echo "Stop it with: make test-cluster-down"

test-cluster-down: venv-test ## Stop the cluster of make test-cluster and remove its files
	$(BIN)/python tests/harness/cluster.py stop --state-dir $(TEST_CLUSTER_DIR)

molecule: venv-test testbin ## Integration: the real playbooks against the harness
	$(BIN)/pytest tests/integration -q -p no:cacheprovider -n 2 --dist loadfile --durations=15
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/molecule test -s default

test-e2e: venv-test ## Real end to end on a Docker host: kind, Flux, charts, filewcount, load test
	@if ! bash tests/harness/can_pull_images.sh; then echo "test-e2e: skipped (see the reason above)"; exit 0; fi
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/molecule test -s kind

benchmark: venv-test testbin ## Benchmarks on the harness: bootstrap wall time and API requests, ab report parsing
	$(BIN)/python tests/benchmarks/bench_bootstrap.py
	$(BIN)/python tests/benchmarks/bench_ab_report.py

schemas: ## Download the pinned CRDs and chart values into FILEWCOUNT_SCHEMAS_DIR (needs internet)
	bash scripts/fetch-schemas.sh "$(FILEWCOUNT_SCHEMAS_DIR)"

docs: venv ## Regenerate roles/*/README.md from their argument specs
	$(BIN)/python scripts/role_docs.py

changelog: venv-test ## Release: make changelog VERSION=0.2.0 (fragments into changelogs/changelog.yaml and CHANGELOG.rst)
	@test -n "$(VERSION)" || { echo "Name the release, for example: make changelog VERSION=0.2.0 (and set it in galaxy.yml)"; exit 2; }
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/antsibull-changelog release --version $(VERSION)

clean: ## Remove .venv and test output
	rm -rf $(VENV) tests/output .pytest_cache .ruff_cache
