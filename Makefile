# Two entry points for a fresh machine: `make study` and `make test`.
# Both create the virtual environment in .venv on first use (again only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: setup study test bench lint faults simulate-sequential

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

study: setup
	$(BIN)/python -m study.run $(ARGS)

lint: setup
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest $(ARGS)

bench: setup
	$(BIN)/python -m cnn.bench $(ARGS)

# Every fault-injection variant (CI runs a slice of them); PostgreSQL ones need CNN_STUDY_POSTGRES_URL, as for make test.
faults: setup
	CNN_STUDY_FAULTS=all $(BIN)/python -m pytest -s tests/study_tests/test_fault_injection.py $(ARGS)

# The README's figures of the sequential design: 500 simulated studies of each of the 4 scenarios, in saved chunks that a
# rerun resumes (about 20 minutes per scenario on one core; ARGS="--scenario 2 --max-repeats 3" runs one scenario with 3
# looks; ARGS="--grids --studies 100" and ARGS="--budget 50 --studies 100" print the tables of the default grid's choice;
# ARGS=--help lists the rest). CI runs a seeded slice (tests/reports_tests/test_sequential.py).
simulate-sequential: setup
	PYTHONPATH=tests nice $(BIN)/python -m reports_tests.simulate_sequential $(ARGS)
