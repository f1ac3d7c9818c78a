# Everyday targets. `make install` once, then `make check` before every commit.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lint format typecheck test test-fast check clean bench

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'

lint:
	$(BIN)/ruff check src tests alembic bench
	$(BIN)/ruff format --check src tests alembic bench

format:
	$(BIN)/ruff check --fix src tests alembic bench
	$(BIN)/ruff format src tests alembic bench

typecheck:
	$(BIN)/mypy

test:
	$(BIN)/python -m pytest

test-fast:
	$(BIN)/python -m pytest -m "not slow"

check: lint typecheck test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist build

bench:
	$(BIN)/python -m bench
