# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test bench drills lint typecheck pytest postgres chromium install install-dev clean

run: $(VENV)/.installed
	$(BIN)/itertrack demo

test: $(VENV)/.installed-dev postgres chromium lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	bash scripts/typecheck.sh

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest

# Starts a local PostgreSQL cluster that is installed but stopped; says so when there is none.
postgres:
	@bash scripts/ensure_postgres.sh

# Debian's chromium, for the test that renders the HTML report in a real browser.
chromium:
	@bash scripts/ensure_chromium.sh

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

clean:
	rm -rf $(VENV) .typecheck .mypy_cache .ruff_cache .pytest_cache .hypothesis itertrack.db itertrack.db-wal itertrack.db-shm

# Every path against its floor (takes several minutes; run on a quiet machine).
bench: $(VENV)/.installed-dev postgres
	$(BIN)/python -m scripts.bench

# Outage, kill, contention and load drills against the local PostgreSQL (stops and starts it);
# two minutes each (about 8 minutes in all). Longer: python -m scripts.drills load --seconds 300.
drills: $(VENV)/.installed-dev postgres
	$(BIN)/python -m scripts.drills --seconds 120
