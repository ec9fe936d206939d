# The environment lives in .venv at the repo root; every target builds on `install`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-test run test test-restarts test-compose lint typecheck bench bench-search bench-replay bench-finder bench-gpt bench-dp clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

# Stamps make re-runs cheap: reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

# serve upgrades the store itself, after it has taken the port: a busy port fails before anything starts.
run: install
	$(VENV)/bin/lrsearch serve --host $(HOST) --port $(PORT)

# The suite but the restart tests, which kill and restart real services for minutes: `make test-restarts`
# runs those (CI runs both).
test: lint typecheck
	$(PY) -m pytest -m "not restarts" $(PYTEST_ARGS)

test-restarts: install-test
	$(PY) -m pytest -m restarts $(PYTEST_ARGS)

# docker-compose.yml in real containers (podman and podman-compose; .ci/compose/setup installs them and
# builds local stand-ins for the base images): a job on the worker containers, down and up again,
# then everything removed. Needs root (apt, rootful podman); CI runs it after `make test`.
test-compose: install-test
	.ci/compose/setup $(VENV)
	LRSEARCH_TEST_COMPOSE=1 $(PY) -m pytest -p no:cacheprovider -s -q tests/test_compose_stack.py

lint: install-test
	$(VENV)/bin/ruff check .

# mypy reads the lrsearch package as it installs: a tree of links maps lrsearch.search to search/
# (the editable install's import hook is invisible to it). search/ is checked strictly.
TYPED := $(VENV)/typed
typecheck: install-test
	rm -rf $(TYPED) && mkdir -p $(TYPED)/lrsearch
	for d in service workers search migrations; do ln -s ../../../$$d $(TYPED)/lrsearch/$$d; done
	for f in __init__.py __main__.py waiting.py workloads.py; do ln -s ../../../lrsearch/$$f $(TYPED)/lrsearch/$$f; done
	MYPYPATH=$(TYPED) $(VENV)/bin/mypy -p lrsearch

bench: install
	$(PIP) install --quiet -e '.[bench]'
	$(PY) -m bench.perf

# gpt-stdlib: the trainer's overhead against plain PyTorch, and the search against the default rate.
# BENCH_ARGS passes flags, e.g. BENCH_ARGS="--only overhead --repeats 7".
bench-gpt: install
	$(PY) -m bench.gpt_stdlib $(BENCH_ARGS)

# Data-parallel start-up: lrsearch's pooled actors against Ray Train's TorchTrainer.
bench-dp: install
	$(PIP) install --quiet -e '.[bench]'
	$(PY) -m bench.data_parallel $(BENCH_ARGS)

# How the API reaches a cluster it does not run on: as a zero-CPU node or through Ray Client.
.PHONY: bench-ray-join
bench-ray-join: install
	$(PIP) install --quiet -e '.[bench]'
	$(PY) -m bench.ray_join $(BENCH_ARGS)

bench-search: install
	$(PIP) install --quiet -e '.[bench]'
	$(PY) -m bench.search_efficiency

# Search across workloads: every strategy, plain Optuna and Ray Tune replayed on each workload's dense-grid
# landscape (trained once, kept in bench/results/landscapes/), anytime curves drawn in docs/search-workloads/.
# BENCH_ARGS passes flags, e.g. BENCH_ARGS="--seeds 40 --workloads mlp-digits,cnn-digits".
.PHONY: bench-workloads
bench-workloads: install
	$(PIP) install --quiet -e '.[bench]'
	$(PY) -m bench.search_workloads $(BENCH_ARGS)

# Population-based training: lrsearch's pbt against Ray Tune's PopulationBasedTraining, and auto at the
# same epochs. BENCH_ARGS passes flags, e.g. BENCH_ARGS=--quick or BENCH_ARGS="--seeds 3 --populations 4".
.PHONY: bench-pbt
bench-pbt: install
	$(PIP) install --quiet -e '.[bench]'
	$(PY) -m bench.pbt $(BENCH_ARGS)

# The same search replayed in process for many seeds (no Ray, no store): how often a 3-seed run of
# the issue's check passes. BENCH_ARGS passes flags, e.g. BENCH_ARGS="--seeds 40 --draws 5 --workers 2".
bench-replay: install
	$(PY) -m bench.search_replay $(BENCH_ARGS)

# torch-lr-finder (and matplotlib) go into a venv of their own, never into $(VENV); the project's
# torch pin holds there too. BENCH_ARGS passes flags, e.g. BENCH_ARGS=--quick.
BENCH_VENV ?= .venv-bench
bench-finder:
	python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q -e '.[finder-bench]'
	$(BENCH_VENV)/bin/python -m bench.lr_finder $(BENCH_ARGS)

clean:
	rm -rf $(VENV) lrsearch.db
