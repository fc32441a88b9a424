# Two entry points, as the README says:
#   make run    install into .venv and run the whole pipeline on the embedded default (three seeds)
#   make quick  the same with one seed (config/one_seed.yaml): to try the pipeline, not to decide
#   make ablations  the SMUG paper's open questions as experiments (snakemake ablations)
#   make backbones  every unrolled method on MoDL, E2E-VarNet and ISTA-Net+ (snakemake backbones)
#   make test   install the test tools too and run the whole test suite
# Everything runs with .venv/bin first on PATH, so the rules' `python` is the pinned interpreter.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
CORES ?= all

.PHONY: run quick ablations backbones test install install-test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python requirements.txt constraints.txt pyproject.toml
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt
	$(BIN)/pip install --quiet -r requirements-test.txt -c constraints.txt
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/snakemake --cores $(CORES)

quick: install
	$(BIN)/snakemake --cores $(CORES) --configfile config/one_seed.yaml

ablations: install
	$(BIN)/snakemake ablations --cores $(CORES)

backbones: install
	$(BIN)/snakemake backbones --cores $(CORES)

test: install-test
	$(BIN)/python -m pytest

lint: install-test
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow

clean:
	find results resources -mindepth 1 ! -name README.md -exec rm -rf {} +
	rm -rf .snakemake
