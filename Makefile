# Two entry points for people: `make demo` and `make test`. Both build .venv first if needed.
# .venv's interpreter: PYTHON if given, else tools/pick-python.sh picks the first of python3.13,
# python3.12, python3.11, python3 that is >= 3.11 and has the pinned torch/torchvision wheels
# (asked only when .venv does not exist yet).
PYTHON ?=
VENV := .venv
STAMP := $(VENV)/.installed
SNAKEMAKE := $(VENV)/bin/snakemake
# The GPU check needs neither .venv nor network: .venv's Python if there is one, else the
# site's python3 (or python) with its own PyTorch and this checkout installed (pip install
# --no-deps -e .; tools/gpu-session.sh does it offline).
CHECK_PYTHON = $(shell test -x $(VENV)/bin/python && echo $(VENV)/bin/python || command -v python3 || command -v python)
GPU_CHECK_OUT ?= gpu-check

.PHONY: env demo test test-benchmarks lint benchmark stale gpu-check clean-demo slurm-profile tables

env: $(STAMP)

# Rebuilt whenever the pinned requirements change.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(VENV)/bin/python || { py="$(PYTHON)"; [ -n "$$py" ] || py=$$(sh tools/pick-python.sh) || exit 1; echo "creating $(VENV) with $$py"; "$$py" -m venv $(VENV); }
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(SNAKEMAKE) --profile profiles/demo

# Two pytest workers: much of the suite waits on SLURM and on signals, so the two cores stay
# busy; each test module runs whole on one worker and the SLURM modules share one
# (tests/conftest.py). TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(VENV)/bin/pytest -ra -n $(TEST_WORKERS)

# The tests that assert wall-clock times (machine- and load-dependent), outside `make test`.
test-benchmarks: $(STAMP)
	$(VENV)/bin/pytest -ra -n 0 -m benchmark

# Throughput of the data stage, loader, training loop and inference on this machine;
# appends stamped rows to docs/benchmarks.md.
benchmark: $(STAMP)
	$(VENV)/bin/python scripts/benchmark.py --fraction 0.05 --train-size 64 --append docs/benchmarks.md

# Finished outputs whose code changed in substance since they were made, and which files.
stale: $(STAMP)
	$(VENV)/bin/python scripts/stale.py

# Pipeline + resume + benchmark on one CUDA node in < 9 minutes; summary in $(GPU_CHECK_OUT)/.
gpu-check:
	$(CHECK_PYTHON) scripts/gpu_check.py --out $(GPU_CHECK_OUT)

# Once per checkout on the cluster: links profiles/slurm into Snakemake's user profile folder
# ($$XDG_CONFIG_HOME/snakemake/slurm), so that `snakemake --profile slurm` works as typed.
slurm-profile:
	sh tools/link-slurm-profile.sh $(CHECK_PYTHON)

# Every table, figure and the report from a run's stored results alone (results/<run>/eval/ and
# results/<run>/splits/*/audit.json: what reviewers get), without Snakemake or training:
#   make tables RUN=<run>
RUN ?= demo
RESULTS ?= results/$(RUN)
FIGURES := roc confusion training_curves reliability reliability_calibrated risk_coverage

tables: $(STAMP)
	$(VENV)/bin/python scripts/compare.py \
		--metrics $(wildcard $(RESULTS)/eval/*/metrics.json $(RESULTS)/eval/*/tta_metrics.json) \
		--audits $(RESULTS)/splits/*/audit.json \
		--tables-dir $(RESULTS)/tables \
		--figures-dir $(RESULTS)/figures
	$(VENV)/bin/python scripts/report.py \
		--tables $(RESULTS)/tables/comparison.md \
		--rows $(RESULTS)/tables/rows.parquet \
		--figures $(foreach f,$(FIGURES),$(RESULTS)/figures/$(f).png) \
		--gradcam $(wildcard $(RESULTS)/eval/*/gradcam.png) \
		--out $(RESULTS)/report.html

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(SNAKEMAKE) --lint
	$(VENV)/bin/snakefmt --check Snakefile rules/

clean-demo:
	rm -rf results/demo
