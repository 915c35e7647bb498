# bayes_regimes developer commands. Every target that runs code depends on `venv`,
# so `make test` and `make demo` work on a fresh clone (they create .venv first).
#
#   make venv       create .venv (Python >= 3.12 found by .ci/find-python) and
#                   pip install -e '.[dev]'; re-installs when pyproject.toml changes
#   make demo       run the demo on the built-in simulated benchmark -> demo_output/
#   make test       ruff check + ruff format --check + fast tests (pytest -n 2 -m "not slow")
#   make test-fast  the fast tests only, no lint
#   make test-slow  the long statistical tests (pytest -m slow)
#   make test-all   lint + every test
#   make lint       ruff check + ruff format --check
#   make format     ruff check --fix + ruff format (rewrites files)
#   make bench      run the benchmark scripts in benchmarks/
#   make clean      remove caches, build artefacts and demo output (keeps .venv)
#   make distclean  clean + remove .venv
#
# Use a particular interpreter for the venv with:  make venv PYTHON=/path/to/python3.12

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
VENV_PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUFF := $(VENV)/bin/ruff
PYTEST := $(VENV_PY) -m pytest
# Parallel workers for the fast suite (pytest-xdist); `make test PYTEST_WORKERS=0` runs serially.
PYTEST_WORKERS ?= 2
DEMO_OUT ?= demo_output
# ruff lints the whole tree (it honours .gitignore and the excludes in pyproject.toml).
LINT_PATHS := .

ifneq ($(strip $(PYTEST_WORKERS)),0)
XDIST := -n $(PYTEST_WORKERS)
else
XDIST :=
endif

# A PYTHON given on the command line must reach .ci/find-python.
ifdef PYTHON
export PYTHON
endif

.PHONY: help venv demo test test-fast test-slow test-all lint format bench clean distclean

help:
	@grep -E '^#   make ' $(firstword $(MAKEFILE_LIST)) | sed 's/^#   //'

venv: $(STAMP)

# Create the virtual environment when its interpreter is missing (or broken).
$(VENV_PY):
	@py="$$(sh .ci/find-python)"; \
	echo "Creating $(VENV) with $$py"; \
	if ! "$$py" -m venv --clear $(VENV); then \
		echo "error: '$$py -m venv' failed; on Debian/Ubuntu install the pythonX.Y-venv package" >&2; \
		exit 1; \
	fi

# (Re-)install the package and dev tools whenever pyproject.toml is newer than the stamp.
$(STAMP): pyproject.toml | $(VENV_PY)
	$(VENV_PY) -m pip install --disable-pip-version-check --progress-bar off -e '.[dev]'
	@touch $(STAMP)

demo: venv
	$(VENV)/bin/bayes-regimes demo --out $(DEMO_OUT)

lint: venv
	$(RUFF) check $(LINT_PATHS)
	$(RUFF) format --check $(LINT_PATHS)

format: venv
	$(RUFF) check --fix $(LINT_PATHS)
	$(RUFF) format $(LINT_PATHS)

test-fast: venv
	$(PYTEST) $(XDIST) -m "not slow"

test: venv
	$(RUFF) check $(LINT_PATHS)
	$(RUFF) format --check $(LINT_PATHS)
	$(PYTEST) $(XDIST) -m "not slow"

test-slow: venv
	$(PYTEST) -m slow

test-all: lint
	$(PYTEST) $(XDIST)

# Every benchmarks/*.py script not starting with an underscore, in name order.
bench: venv
	@shopt -s nullglob; \
	scripts=(benchmarks/[!_]*.py); \
	if [ $${#scripts[@]} -eq 0 ]; then echo "no benchmark scripts in benchmarks/"; exit 0; fi; \
	for script in "$${scripts[@]}"; do \
		echo "==> $$script"; \
		$(VENV_PY) "$$script"; \
	done

clean:
	rm -rf $(DEMO_OUT) build dist .pytest_cache .ruff_cache *.egg-info benchmarks/results/*.tmp
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
