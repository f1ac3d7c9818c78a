# Everyday targets. `make install` once, then `make check` before every commit.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lint format typecheck test test-fast check clean bench lock

install:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.txt -r requirements/build.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .

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

# The locked versions and hashes CI, `make install` and the image install (needs pip-tools: pip install pip-tools).
# Run after changing a dependency in pyproject.toml, and commit the three files with it.
LOCK := $(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url --no-emit-find-links \
	--allow-unsafe
lock:
	$(LOCK) --output-file requirements/runtime.txt pyproject.toml
	$(LOCK) --extra embedded --output-file requirements/embedded.txt pyproject.toml
	$(LOCK) --extra test --extra dev --output-file requirements/dev.txt pyproject.toml
	$(LOCK) --build-deps-for=wheel --build-deps-for=editable --only-build-deps --output-file requirements/build.txt \
		pyproject.toml
