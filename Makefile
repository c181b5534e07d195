# caseloop — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-unit test-integration test-e2e lint typecheck bench chaos install clean browser-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/caseloop up

# The console's browser tests: Debian's Chromium, chromedriver and a CJK font (installed as root).
browser-deps:
	bash tests/browser/ensure-deps.sh

test: $(STAMP) browser-deps
	$(BIN)/ruff check shared services ops tests
	$(BIN)/mypy
	$(BIN)/pytest -q

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

test-e2e: $(STAMP) browser-deps
	$(BIN)/pytest -q tests/e2e

lint: $(STAMP)
	$(BIN)/ruff check shared services ops tests
	$(BIN)/ruff format --check shared services ops tests

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP) browser-deps
	$(BIN)/python -m tests.bench

CASES ?= 500
chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --cases $(CASES)

clean:
	rm -rf $(VENV) .caseloop .pytest_cache .mypy_cache .ruff_cache
