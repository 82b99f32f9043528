# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Recipes use bash: pipefail in typecheck, process substitution in link.
SHELL  := /bin/bash

# A strict editable install lays `itertrack.*` out under build/__editable__.*/ as links to the real files,
# so mypy and editors resolve the package-dir mapping (domain/ -> itertrack.domain) like Python does.
# PIP: setuptools warns on every such install not to delete build/; `make clean` deletes it with .venv.
STRICT    := --config-settings editable_mode=strict
PIP       := PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip
LINK_TREE := build/__editable__.itertrack-*/itertrack

.PHONY: run test bench drills lint typecheck pytest link postgres nats chromium valgrind install install-dev clean

run: $(VENV)/.installed link
	$(BIN)/itertrack demo

test: $(VENV)/.installed-dev link postgres nats chromium lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# `mypy` alone checks the installed packages ([tool.mypy] packages); mypy names their modules by the
# links under build/, so sed turns each back into the real file's path. Then tests and scripts.
typecheck: $(VENV)/.installed-dev link
	set -o pipefail; $(BIN)/mypy | sed 's|build/__editable__\.[^/]*/itertrack/||g'
	$(BIN)/mypy tests scripts

pytest: $(VENV)/.installed-dev link
	$(BIN)/pytest

# Strict mode links the files that exist when it runs (modules and package data: py.typed, *.toml): one added,
# removed or renamed since is not importable until the links are laid again (--no-deps: a few seconds).
# Compares file lists, not times.
LINK_DIFF = diff <(find domain projections adapters -name __pycache__ -prune -o -type f \( -name '*.py' -o -name py.typed -o -name '*.toml' -o -path '*/documents/schemas/*.json' -o -path '*/web/templates/*' -o -path '*/web/static/*' \) -print | LC_ALL=C sort) \
                 <(cd $(LINK_TREE) 2>/dev/null && find . ! -type d | sed 's|^\./||' | LC_ALL=C sort)
link: | $(VENV)/.installed
	@$(LINK_DIFF) >/dev/null || { echo "link: the links under build/ differ from the package files; relinking"; \
	                              $(PIP) install --quiet --no-deps -e . $(STRICT); }
	@$(LINK_DIFF) || { echo "link: files marked < are not installed: is their folder in [tool.setuptools] packages?"; exit 1; }

# Starts a local PostgreSQL cluster that is installed but stopped; says so when there is none.
postgres:
	@bash scripts/ensure_postgres.sh

# NATS with JetStream for the relay's tests: installs Debian's nats-server when missing (as root), starts it
# when stopped; says so when there is none.
nats:
	@bash scripts/ensure_nats.sh

# Debian's chromium, for the browser tests of the HTML report and the dashboard (Playwright drives it).
chromium:
	@bash scripts/ensure_chromium.sh

# Debian's valgrind, for the benchmark's instruction counts of the write path (scripts/bench_callgrind.py).
valgrind:
	@bash scripts/ensure_valgrind.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Each install drops the old link tree first: a new version would otherwise leave a second one beside it.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	rm -rf build/__editable__.itertrack-*
	$(PIP) install --quiet -e . $(STRICT)
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	rm -rf build/__editable__.itertrack-*
	$(PIP) install --quiet -e '.[dev,embed]' $(STRICT)
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed link
install-dev: $(VENV)/.installed-dev link

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache .hypothesis itertrack.db itertrack.db-wal itertrack.db-shm

# Every path against its floor (takes several minutes; run on a quiet machine).
bench: $(VENV)/.installed-dev link postgres nats valgrind
	$(BIN)/python -m scripts.bench

# Outage, kill, contention and load drills against the local PostgreSQL (stops and starts it);
# two minutes each (about 8 minutes in all). Longer: python -m scripts.drills load --seconds 300.
drills: $(VENV)/.installed-dev link postgres
	$(BIN)/python -m scripts.drills --seconds 120
