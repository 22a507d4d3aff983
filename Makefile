# Two entry points for people: `make demo` and `make test`. Both build .venv first if needed.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
SNAKEMAKE := $(VENV)/bin/snakemake

.PHONY: env demo test lint benchmark stale clean-demo

env: $(STAMP)

# Rebuilt whenever the pinned requirements change.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(SNAKEMAKE) --profile profiles/demo

test: $(STAMP)
	$(VENV)/bin/pytest -ra

# Throughput of the data stage, loader, training loop and inference on this machine;
# appends stamped rows to docs/benchmarks.md.
benchmark: $(STAMP)
	$(VENV)/bin/python scripts/benchmark.py --fraction 0.05 --train-size 64 --append docs/benchmarks.md

# Finished outputs whose code changed in substance since they were made, and which files.
stale: $(STAMP)
	PYTHONPATH=src $(VENV)/bin/python scripts/stale.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(SNAKEMAKE) --lint
	$(VENV)/bin/snakefmt --check Snakefile rules/

clean-demo:
	rm -rf results/demo
