# Two commands matter: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run serve test lint bench bench-peers mutate mutate-killers clean

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
# The tests mostly wait (a third of a core for the whole selection), hence more children than
# cores: 6 on this 2-core machine finished in 29.5 minutes where 4 had not in 51 (TESTING.md).
# NICE= for a timed run on a quiet machine.
MUTANTS ?=
CHILDREN ?= 6
NICE ?= nice -n 19
mutate: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(NICE) $(BIN)/python tools/mutate.py --max-children $(CHILDREN) $(MUTANTS)
	$(BIN)/python tools/mutation_report.py

# After a full `make mutate`: its killers become the tests each function's mutants try first
# in later runs, a fresh clone's included (tools/killers.txt; TESTING.md).
mutate-killers: $(STAMP)
	$(BIN)/python tools/mutate.py --save-killers

clean:
	rm -rf .venv-peers $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis mutants
