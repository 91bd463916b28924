# The two commands a new user needs: `make run` and `make test`. Both set themselves up.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
FLEET ?= 20
# AGENT=local: instead of the simulated fleet, one real agent (agent/, dry run) reporting this machine.
AGENT ?=
# Every target here is development: DEBUG unset means production (SECRET_KEY and FERNET_KEYS required).
export DEBUG ?= true

.PHONY: run test venv lint check bench fuzz clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py bootstrap_demo
	$(BIN)/python manage.py seed_demo_policies
	PORT=$(PORT) FLEET=$(FLEET) $(BIN)/python manage.py run_all --port $(PORT) --fleet $(FLEET)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

check: venv
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

bench: venv
	$(BIN)/python bench/run_all.py

# schemathesis, every operation x admin/viewer/agent/anonymous, 100 examples each (tests/hardening/fuzz.py).
fuzz: venv
	$(BIN)/python tests/hardening/fuzz.py --examples $(or $(EXAMPLES),100)

clean:
	rm -rf var/celery var/db.sqlite3 var/agent staticfiles
