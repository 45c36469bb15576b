# django-appsync-events: developer commands.
#
# The two that matter:   make demo   and   make test
# Both create .venv when it is missing and install the project into it (editable, with the
# "dev" dependency group), so a fresh machine needs only python3 (3.11+), make and the package
# registries. See docs/development.md for the rest.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

# -- knobs (override on the command line: make test PYTEST_ARGS="-k paths -x") --------------
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
DEMO_ARGS ?=

# The second interpreter leg: Python 3.12 with Django 6.x in its own venv.
PY312_CMD ?= env PYENV_VERSION=3.12.1 python
VENV312 ?= .venv-py312
PY312 := $(VENV312)/bin/python
STAMP312 := $(VENV312)/.installed-stamp
DJANGO6 ?= django>=6,<7
PY312_PYTEST_ARGS ?= -m "not slow"

# The dependency-floors leg: every dependency at the lower bound pyproject.toml declares.
VENVFLOORS ?= .venv-floors
PYFLOORS := $(VENVFLOORS)/bin/python
STAMPFLOORS := $(VENVFLOORS)/.installed-stamp
FLOORS := $(VENVFLOORS)/floors.txt
FLOORS_PYTEST_ARGS ?= -m "not slow"

# The benchmarks' venv: the project with the "bench" group (MiniStack pins botocore exactly,
# so it never goes into .venv). BENCH_ARGS go to bench/run.py (e.g. --only forwarding,soak).
VENVBENCH ?= .venv-bench
PYBENCH := $(VENVBENCH)/bin/python
STAMPBENCH := $(VENVBENCH)/.installed-stamp
BENCH_ARGS ?=

# Node harness driving the official AWS JS client in the interop tests.
JS_DIR := tests/interop/js

# pip, quietly: a pip configuration may name extra local index folders that do not exist, and
# pip warns about each of them for every package; drop those lines, keep every other message.
PIP_QUIET := 2>&1 | { grep -v 'is neither a file nor a directory' || true; }

# -- virtualenvs ------------------------------------------------------------------------------

# Created only when missing: an existing .venv (perhaps shared) is never recreated.
$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "error: $(PYTHON) is older than Python 3.11; run: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

# `pip install --group` needs pip 25.1 or newer; a new venv may ship an older pip.
$(STAMP): pyproject.toml | $(PY)
	@echo '$(PY) -m pip install "pip>=25.1"'
	@$(PY) -m pip install --quiet "pip>=25.1" $(PIP_QUIET)
	@echo '$(PY) -m pip install -e . --group dev'
	@$(PY) -m pip install --quiet -e . --group dev $(PIP_QUIET)
	@touch $@

$(PY312):
	@$(PY312_CMD) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
	  || { echo "error: '$(PY312_CMD)' is not Python 3.12; run: make test-py312 PY312_CMD=python3.12" >&2; exit 1; }
	$(PY312_CMD) -m venv $(VENV312)

$(STAMP312): pyproject.toml | $(PY312)
	@echo '$(PY312) -m pip install "pip>=25.1"'
	@$(PY312) -m pip install --quiet "pip>=25.1" $(PIP_QUIET)
	@echo '$(PY312) -m pip install -e . --group dev "$(DJANGO6)"'
	@$(PY312) -m pip install --quiet -e . --group dev "$(DJANGO6)" $(PIP_QUIET)
	@touch $@

# Recreated from scratch whenever pyproject.toml (or the generator) changes, so nothing newer
# than a floor survives from an earlier install. Only the "test" group: the dev tools (stubs,
# mypy plugins) may need newer releases than the floors.
$(STAMPFLOORS): pyproject.toml .ci/floors.py
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
	  || { echo "error: $(PYTHON) is not Python 3.11, the oldest supported; run: make test-floors PYTHON=python3.11" >&2; exit 1; }
	rm -rf $(VENVFLOORS)
	$(PYTHON) -m venv $(VENVFLOORS)
	$(PYTHON) .ci/floors.py > $(FLOORS)
	@echo '$(PYFLOORS) -m pip install "pip>=25.1"'
	@$(PYFLOORS) -m pip install --quiet "pip>=25.1" $(PIP_QUIET)
	@echo '$(PYFLOORS) -m pip install -c $(FLOORS) -e ".[redis,postgres,metrics,otel]" --group test'
	@$(PYFLOORS) -m pip install --quiet -c $(FLOORS) -e ".[redis,postgres,metrics,otel]" --group test $(PIP_QUIET)
	@touch $@

$(PYBENCH):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	  || { echo "error: $(PYTHON) is older than Python 3.11; run: make PYTHON=python3.11 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENVBENCH)

$(STAMPBENCH): pyproject.toml | $(PYBENCH)
	@echo '$(PYBENCH) -m pip install "pip>=25.1"'
	@$(PYBENCH) -m pip install --quiet "pip>=25.1" $(PIP_QUIET)
	@echo '$(PYBENCH) -m pip install -e . --group bench'
	@$(PYBENCH) -m pip install --quiet -e . --group bench $(PIP_QUIET)
	@touch $@

.PHONY: install node-deps
install: $(STAMP) node-deps ## create .venv when missing and install the project with its dev tools

# Interop tests skip (or fail under CI=true) without these; npm is optional on a dev machine.
node-deps:
	@if [ -d $(JS_DIR)/node_modules ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
	  echo "npm ci --prefix $(JS_DIR)"; npm ci --prefix $(JS_DIR) --no-audit --no-fund --loglevel=error; \
	else echo "note: npm not found; the Node interop tests will be skipped"; fi

# -- the two commands -------------------------------------------------------------------------

.PHONY: demo test
demo: install ## run the demo chat on 127.0.0.1 (emulator, web server and listener in one process; DEMO_DIRECT=1: direct mode)
	$(PY) manage.py migrate --no-input
	exec $(PY) manage.py appsync_demo $(DEMO_ARGS)

test: install ## run the whole test suite with branch coverage (fails under the floor in pyproject)
	@rm -f .coverage .coverage.*
	@COVERAGE_FILE=$(CURDIR)/.coverage $(PY) -m coverage run --parallel-mode -m pytest $(PYTEST_ARGS) \
	  || { rc=$$?; if [ $$rc -eq 5 ]; then echo "error: pytest ran no tests" >&2; fi; exit $$rc; }
	@COVERAGE_FILE=$(CURDIR)/.coverage $(PY) -m coverage combine --quiet
	COVERAGE_FILE=$(CURDIR)/.coverage $(PY) -m coverage report

# -- the reliability soak ------------------------------------------------------------------

# tests/reliability runs in `make test` (its short variant); the soak scales every scenario
# up (fault cycles, events, 100,000 fuzzing inputs per fuzz test) and rewrites RELIABILITY.md
# from its figures (test-artifacts/reliability-*.json).
.PHONY: soak
soak: install ## the reliability suite's long variant (about 10 minutes), then RELIABILITY.md
	APPSYNC_EVENTS_SOAK=1 $(PY) -m pytest tests/reliability $(PYTEST_ARGS)
	$(PY) -m bench.reliability_report

# -- the other checks CI runs (.ci/run) -------------------------------------------------------

.PHONY: lint format typecheck migrations-check test-postgres test-py312 test-floors wheel-check check
lint: $(STAMP) ## ruff lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## apply ruff's formatting and safe fixes (your own files only when sharing a tree)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

typecheck: $(STAMP) ## mypy --strict on the package (and the demo project, a typed user of it)
	$(PY) -m mypy appsync_events demo_project

migrations-check: $(STAMP) ## fail when a model change has no migration
	$(PY) manage.py makemigrations --check --dry-run

# The tests that use the database (auto-marked "database") and the "postgres" ones, on PostgreSQL.
test-postgres: install ## the database tests again, on the PostgreSQL server
	APPSYNC_EVENTS_TEST_DB=postgres $(PY) -m pytest -m "database or postgres" $(PYTEST_ARGS)

test-py312: $(STAMP312) node-deps ## the suite on Python 3.12 with Django 6.x (own venv, .venv-py312)
	@$(PY312) -c 'import django, sys; print(f"Python {sys.version.split()[0]}, Django {django.__version__}")'
	$(PY312) -m pytest $(PY312_PYTEST_ARGS) $(PYTEST_ARGS)

test-floors: $(STAMPFLOORS) node-deps ## the suite with every dependency at its declared floor (own venv, .venv-floors)
	@echo "Python $$($(PYFLOORS) -c 'import sys; print(sys.version.split()[0])'), at the floors of pyproject.toml:"
	@$(PYFLOORS) .ci/floors.py --report $(FLOORS)
	@$(PYFLOORS) -m pytest $(FLOORS_PYTEST_ARGS) $(PYTEST_ARGS) \
	  || { rc=$$?; if [ $$rc -eq 5 ]; then echo "error: pytest ran no tests" >&2; fi; exit $$rc; }

wheel-check: $(STAMP) ## build the wheel, install it in a clean venv, check its contents
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	$(PY) -m build --wheel --outdir "$$tmp/dist" . >"$$tmp/build.log" 2>&1 \
	  || { cat "$$tmp/build.log" >&2; exit 1; }; \
	wheel="$$(ls "$$tmp"/dist/*.whl)"; echo "built $${wheel##*/}"; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet "$$wheel" $(PIP_QUIET); \
	cd "$$tmp" && "$$tmp/venv/bin/python" "$(CURDIR)/.ci/check_wheel.py"

check: lint typecheck migrations-check test ## the quick local subset of CI

# -- the docs site ----------------------------------------------------------------------------

DOCS_OUT := docs/_build/html
SPHINXOPTS ?=

# Always a full build (-E): an incremental one would not repeat the warnings of pages it
# does not read again, and would pass with them unfixed. -W -n: every warning, and every
# reference that does not resolve, fails the build.
.PHONY: docs
docs: $(STAMP) ## build the docs site (docs/, README.md, the API reference) into docs/_build/html
	@$(PY) -c 'import sphinx, myst_parser' 2>/dev/null || { \
	  echo "error: the docs tools (Sphinx, MyST-Parser: the \"docs\" dependency group) are not installed for $(PY); run: $(PY) -m pip install --group docs" >&2; \
	  exit 1; }
	$(PY) -m sphinx -E -W --keep-going -n -q -j auto -c docs . $(DOCS_OUT) $(SPHINXOPTS)
	@echo "docs built: $(DOCS_OUT)/index.html"

# -- benchmarks (bench/, never part of the test suite) ----------------------------------------

.PHONY: bench bench-quick bench-soak
bench: $(STAMPBENCH) ## run every benchmark (~20 min; Redis and PostgreSQL up): BENCHMARKS.md, bench/results/
	$(PYBENCH) -m bench.run $(BENCH_ARGS)

bench-quick: $(STAMPBENCH) ## every benchmark at small sizes (about 1.5 minutes): bench/results/quick/
	$(PYBENCH) -m bench.run --quick $(BENCH_ARGS)

bench-soak: $(STAMPBENCH) ## only the 1M-event listener soak (memory curve): its part of BENCHMARKS.md
	$(PYBENCH) -m bench.run --only soak $(BENCH_ARGS)

# -- housekeeping -----------------------------------------------------------------------------

.PHONY: clean distclean help
clean: ## remove build and test artefacts (keeps the venvs, node_modules and the demo database)
	rm -rf build dist htmlcov .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache \
	  test-artifacts *.egg-info docs/_build docs/api
	find . -path ./$(VENV) -prune -o -path ./$(VENV312) -prune -o -path ./$(VENVFLOORS) -prune \
	  -o -path ./$(VENVBENCH) -prune \
	  -o -path ./$(JS_DIR)/node_modules -prune \
	  -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean ## also remove the venvs, node_modules and the demo database
	rm -rf $(VENV) $(VENV312) $(VENVFLOORS) $(VENVBENCH) $(JS_DIR)/node_modules demo.sqlite3

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
	  | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-17s %s\n", $$1, $$2}'
