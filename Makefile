# hscale: does throughput grow with the number of replicas? `make help` lists targets.
# Knobs (REPLICAS, SCENARIO, DURATION, ...) are variables on make's command line:
# every one given there is handed to `hscale bench --set NAME=VALUE`, which validates it
# (a misspelt knob is an error, not silently ignored). Their defaults live in one place,
# hscale/settings.py; `make knobs` prints them.

VENV   ?= .venv
PYTHON ?= python3
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# Variables of this Makefile itself, not knobs of a sweep.
MAKE_ONLY = VENV PYTHON PYTEST_ARGS RUN STORES RUNS LABELS OUT NODES IMAGE_REGISTRY
KNOB_ARGS = $(strip $(foreach v,$(sort $(.VARIABLES)),$(if $(filter command line,$(origin $(v))),$(if $(filter $(v),$(MAKE_ONLY)),,--set '$(v)=$($(v))'))))

.DEFAULT_GOAL := help

.PHONY: help ## list targets
help:
	@grep -E '^\.PHONY: [a-z0-9-]+ ## ' $(MAKEFILE_LIST) | sed -E 's/^\.PHONY: ([a-z0-9-]+) ## (.*)/  make \1\t\2/' | expand -t 20
	@echo "Knobs: make knobs"

$(STAMP): pyproject.toml app/requirements.txt loadtests/requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[app,loadgen,dev]'
	@touch $@

.PHONY: setup ## create .venv and install system packages (nginx, redis-server, memcached, postgresql, chromium, wrk) if missing
setup: $(STAMP)
	@bash scripts/install-system-packages

.PHONY: bench ## sweep N = 1..REPLICAS, TRIALS each: table, verdict, results/<run>/ with report.html
bench: setup
	$(BIN)/hscale bench $(KNOB_ARGS)

.PHONY: faults ## kill a replica, pause one, restart the store, under load at N = REPLICAS: results/<run>/faults.html
faults: setup
	$(BIN)/hscale faults $(KNOB_ARGS)

.PHONY: loadgen-check ## hscale's Locust against wrk at N = 1 and REPLICAS: how much the load generator bends the curve here
loadgen-check: setup
	$(BIN)/hscale loadgen-check $(KNOB_ARGS)

.PHONY: cleanup ## remove what killed runs left behind (processes, containers, networks, cgroups, temp files)
cleanup: setup
	$(BIN)/hscale cleanup $(if $(RUN),--run '$(RUN)')

.PHONY: cluster ## a test swarm of NODES (default 3) Docker engines in containers on this machine, with a registry
cluster: setup
	$(BIN)/hscale cluster up $(if $(NODES),--nodes '$(NODES)') $(if $(OFFLINE),--offline '$(OFFLINE)')

.PHONY: cluster-down ## remove the test swarm: its containers, networks and volumes
cluster-down: setup
	$(BIN)/hscale cluster down

.PHONY: compare ## the same sweep per store, interleaved: make compare STORES="redis memcached postgres memory"
compare: setup
	@test -n "$(strip $(STORES))" || { echo 'usage: make compare STORES="redis memcached ..." [knobs]' >&2; exit 2; }
	$(BIN)/hscale compare-stores --stores '$(STORES)' $(KNOB_ARGS)

.PHONY: show ## print the table of results/latest (RUN=results/<id> for another)
show: setup
	$(BIN)/hscale show $(RUN)

.PHONY: plot ## redraw throughput.png of results/latest (RUN=... for another)
plot: setup
	$(BIN)/hscale plot $(RUN)

.PHONY: analyze ## fit the scaling models to results/latest (RUN=dir or CSV)
analyze: setup
	$(BIN)/hscale analyze $(RUN)

.PHONY: report ## regenerate report.html/.md and figures/ of results/latest (RUN=... for another)
report: setup
	$(BIN)/hscale report $(RUN)

.PHONY: compare-runs ## compare runs: make compare-runs RUNS="results/<a> results/<b>" [LABELS="A=results/<a>"] [OUT=dir]
compare-runs: setup
	@test -n "$(strip $(RUNS))" || { echo 'usage: make compare-runs RUNS="results/<a> results/<b> ..."' >&2; exit 2; }
	$(BIN)/hscale compare $(RUNS) $(if $(OUT),--out '$(OUT)') $(foreach l,$(LABELS),--label '$(l)')

.PHONY: init ## write a starter Locust file from your app's URL map: make init APP=path [APP_MODULE=m:app] [OUT=file] [FORCE=1]
init: setup
	@test -n "$(strip $(APP))" || { echo 'usage: make init APP=path/to/project [APP_MODULE=module:app] [OUT=file] [FORCE=1]' >&2; exit 2; }
	$(BIN)/hscale init '$(APP)' $(if $(APP_MODULE),--app-module '$(APP_MODULE)') $(if $(OUT),--out '$(OUT)') $(if $(FORCE),--force)

.PHONY: export-k8s ## Kubernetes manifests of the stack (validated, not run): make export-k8s REPLICAS=4 [STORE=..] [LOADGEN_WORKERS=k] [OUT=dir] [IMAGE_REGISTRY=reg]
export-k8s: setup
	$(BIN)/hscale export k8s $(KNOB_ARGS) $(if $(OUT),--out '$(OUT)') $(if $(IMAGE_REGISTRY),--image-registry '$(IMAGE_REGISTRY)')

.PHONY: knobs ## list every knob with its default
knobs: setup
	@$(BIN)/hscale knobs

# The unit tests (app, harness) run on every core; the whole-stack tests (sweeps, docker,
# swarm, the cluster) one at a time after them, since their bounds need the host's CPU.
UNIT_TESTS  = tests/app tests/harness
STACK_TESTS = tests/cluster tests/docker tests/e2e tests/swarm

.PHONY: test ## the whole test suite: unit tests on every core, then the whole-stack tests one at a time (PYTEST_ARGS: one plain pytest run)
test: setup
ifeq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/python -m pytest -n auto $(UNIT_TESTS)
	$(BIN)/python -m pytest $(STACK_TESTS)
else
	$(BIN)/python -m pytest $(PYTEST_ARGS)
endif

.PHONY: lint ## ruff check, format check and mypy (hscale/, analysis/)
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

.PHONY: clean ## remove the venv and caches (results/ is kept)
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info
