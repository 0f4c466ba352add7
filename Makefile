# Two commands matter: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run serve test lint bench bench-peers mutate clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PIP_CONSTRAINT=constraints.txt $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/taskrpc-tui --local $(ARGS)

serve: $(STAMP)
	$(BIN)/taskrpc-server $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m bench

# taskrpc against RQ, arq and Celery (issue 13): needs redis-server, which this installs with
# apt-get when it is missing and we are root; the peers get their own venvs in .venv-peers/.
bench-peers: $(STAMP)
	@command -v redis-server >/dev/null || [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server)
	$(BIN)/python -m bench peers $(ARGS)

# Mutation testing (TESTING.md): every mutant of backend/, cli/ and tui/model.py against the
# tests that cover it; `make mutate MUTANTS='backend.jobs.*'` for one module. Not in `make test`.
# The PostgreSQL tests share one cluster, started and removed by tools/shared_pg.py.
MUTANTS ?=
mutate: $(STAMP)
	nice -n 19 $(BIN)/python tools/shared_pg.py $(BIN)/mutmut run --max-children 2 $(MUTANTS)
	$(BIN)/python tools/mutation_report.py

clean:
	rm -rf .venv-peers $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis mutants
