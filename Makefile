# The two commands of the README. Each sets up .venv idempotently (Python 3.10, full lock) and then does its job.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= runs/ml-100k
DATASET ?= ml-100k
PYTEST_ARGS ?=
## pytest-xdist workers (one per core; `PYTEST_WORKERS=0` runs in this process). --dist loadfile keeps a test file on
## one worker, so its module fixtures (a pipeline run shared by its tests) run once.
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: setup browser run test test-fast lint format bench clean

setup:
	@bash scripts/bootstrap.sh

## the headless browser tests/serving/test_page.py drives (Debian's chromium + chromium-driver, apt-get as root)
browser:
	@bash scripts/browser_deps.sh

## make run: set up, then run the pipeline on the bundled default dataset (ML-100K)
run: setup
	$(VENV)/bin/pinsage run --dataset $(DATASET) --output $(OUT) --serve-and-query

## make test: set up, lint (ruff check + ruff format --check), then the whole test suite (slow end-to-end tests
## included, as CI runs it)
test: setup lint browser
	$(PY) -m pytest tests -q -ra --durations=15 $(XDIST) $(PYTEST_ARGS)

## make test-fast: lint, then skip the tests marked slow
test-fast: setup lint browser
	$(PY) -m pytest tests -q -m "not slow" $(XDIST) $(PYTEST_ARGS)

## make lint: one formatting and one lint for the whole repo (ruff.toml); `make format` applies the formatting
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .

clean:
	rm -rf runs .pytest_cache
