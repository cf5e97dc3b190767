# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench migrate clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## Run the service on http://localhost:$${PORT:-3000} with local defaults:
## embedded Postgres when DATABASE_URL is unset, .eml outbox without AWS keys.
## While it runs, .local/service.json holds its URL, so that commands run with
## APP_ENV=local in another terminal make links to it.
run: $(STAMP)
	APP_ENV=local $(PY) -m amazonsender dev

## Run the tests against a real Postgres (TEST_DATABASE_URL, 127.0.0.1:5432, or embedded).
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

## Benchmark the real service (gunicorn, Postgres, a local SES stand-in) and print a
## table; BENCH_QUICK=1 for a short run, other BENCH_* options in bench/options.py.
## Never part of `make test`.
bench: $(STAMP)
	$(PY) -m bench

migrate: $(STAMP)
	$(PY) -m amazonsender db upgrade

clean:
	rm -rf $(VENV) .pytest_cache
