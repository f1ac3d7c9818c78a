# Everyday targets. `make install` once, then `make check` before every commit.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lint format typecheck test check clean

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'

lint:
	$(BIN)/ruff check src tests alembic
	$(BIN)/ruff format --check src tests alembic

format:
	$(BIN)/ruff check --fix src tests alembic
	$(BIN)/ruff format src tests alembic

typecheck:
	$(BIN)/mypy

test:
	$(BIN)/python -m pytest

check: lint typecheck test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache dist build
