# Two entry points for a fresh machine: `make study` and `make test`.
# Both create the virtual environment in .venv on first use (again only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: setup study test bench lint

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
