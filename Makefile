# The two commands of the README: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run dev test lint fmt venv browser redis db-start db-stop clean-db

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Site requirements (torch pinned to the CPU wheel 2.13.0) and test tools.
$(VENV)/.installed: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# The site under its supervisor: gunicorn, the task cluster, PostgreSQL (scripts/run.py).
run: venv
	$(PY) scripts/run.py

# Development: Django's runserver with DEBUG on and auto-reload, and no task cluster
# (start one in another shell with `$(PY) manage.py qcluster`).
dev: venv
	$(PY) scripts/pg.py start
	DJANGO_DEBUG=1 $(PY) manage.py migrate --noinput -v 0
	DJANGO_DEBUG=1 $(PY) manage.py runserver $${GALCAT_HOST:-127.0.0.1}:$${GALCAT_PORT:-8000}

# Chromium for the browser tests (Debian package; playwright drives it, no browser download).
browser:
	@if [ ! -x /usr/bin/chromium ]; then \
	  echo "installing chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null) \
	    || echo "WARNING: chromium could not be installed; browser tests will be skipped"; \
	fi

# Debian's redis-server for the Redis broker test (tests/jobs/test_redis.py starts its own).
redis:
	@if ! command -v redis-server >/dev/null; then \
	  echo "installing redis-server for the Redis broker test"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null) \
	    || echo "WARNING: redis-server could not be installed; the Redis broker test will be skipped"; \
	fi

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

fmt: venv
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# PostgreSQL is stopped afterwards when this target started it.
test: venv browser redis lint
	@state=$$($(PY) scripts/pg.py start | tail -n 1); \
	$(PY) manage.py makemigrations --check --dry-run && $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ "$$state" = "started" ]; then $(PY) scripts/pg.py stop; fi; \
	exit $$rc

db-start: venv
	$(PY) scripts/pg.py start

db-stop: venv
	$(PY) scripts/pg.py stop
