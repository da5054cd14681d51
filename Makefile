# Everything a person repeats. `make up` runs the platform, `make test` runs the suite; both set up
# the virtualenv first and use the embedded PostgreSQL and Redis unless DASI_DATABASE_URL /
# DASI_REDIS_URL point elsewhere.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install up test lint format typecheck migrate check-migrations servers-stop clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/dasi up

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(STAMP)
	$(BIN)/mypy

migrate: $(STAMP)
	$(BIN)/dasi migrate

check-migrations: $(STAMP)
	$(BIN)/dasi migrate --check

servers-stop: $(STAMP)
	$(BIN)/dasi servers stop

clean: servers-stop
	rm -rf .dasi $(VENV)
