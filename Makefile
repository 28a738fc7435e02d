# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint fmt venv browser db-start db-stop clean-db

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Site requirements (torch pinned to the CPU wheel 2.13.0) and test tools.
$(VENV)/.installed: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

run: venv
	$(PY) scripts/run.py

# Chromium for the browser tests (Debian package; playwright drives it, no browser download).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	    || echo "WARNING: chromium could not be installed; browser tests will be skipped"; \
	fi

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

fmt: venv
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# PostgreSQL is stopped afterwards when this target started it.
test: venv browser lint
	@state=$$($(PY) scripts/pg.py start | tail -n 1); \
	$(PY) manage.py makemigrations --check --dry-run && $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ "$$state" = "started" ]; then $(PY) scripts/pg.py stop; fi; \
	exit $$rc

db-start: venv
	$(PY) scripts/pg.py start

db-stop: venv
	$(PY) scripts/pg.py stop
