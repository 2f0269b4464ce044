# Two entry points for a fresh machine: `make study` and `make test`.
# Both create the virtual environment in .venv on first use (again only when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: setup study test bench lint faults simulate-sequential example-10k ladder

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

# The ladder's second rung (docs/ladder.md): the default grid (3 activations x 3 losses x lr 1e-4, 1e-3, 1e-2), sequential,
# 15 epochs, on 10,000 training images and the whole 10,000-image test set of the CIFAR-10 JPEG archive in ../shared/data
# (or $CIFAR10_JPG), unpacked once into data/cifar10-jpg. Resumable: rerun it after any stop. Then `make ladder`.
CIFAR10_JPG ?= ../shared/data/cifar10-jpg.tar.gz
EXAMPLE_10K := --data-dir data/cifar10-jpg --train-size 10000 --test-size 10000 --epochs 15 --compare-epoch 10 --workers 2 \
	--study-name cifar10-10k --storage sqlite:///docs/example-10k/study.db --no-report --keep-weights none
example-10k: setup
	test -d data/cifar10-jpg/train || (mkdir -p data/cifar10-jpg && tar xzf $(CIFAR10_JPG) -C data/cifar10-jpg)
	mkdir -p docs/example-10k
	$(BIN)/python -m study.run $(EXAMPLE_10K) $(ARGS)

# The second and third rungs' reports rebuilt from their databases (the third: the GPU check's full-data study on an H200),
# and the three examples' verdicts side by side (docs/ladder/compare.md).
ladder: setup
	$(BIN)/python -m reports.build --storage sqlite:///docs/example-10k/study.db --study-name cifar10-10k --out docs/example-10k --no-samples
	$(BIN)/python -m reports.build --storage sqlite:///docs/example-50k/study.db --study-name gpu-check --out docs/example-50k --no-samples
	$(BIN)/python -m reports.compare docs/example docs/example-10k docs/example-50k --out docs/ladder
