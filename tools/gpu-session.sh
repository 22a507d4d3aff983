#!/bin/sh
# One GPU check on a machine without network whose python3 has PyTorch but not the workflow
# tools (docs/benchmarks.md, "GPU rows"): install the carried wheels (.whl/, made by
# tools/fetch-gpu-wheels.sh) into a venv that sees the system packages, then run the check under
# a hard limit, so that the whole call ends within LIMIT seconds (default 560). Further
# arguments go to scripts/gpu_check.py (e.g. --device cpu --tiny to try this script anywhere).
#   sh tools/gpu-session.sh OUT_DIR [LIMIT_SECONDS [gpu_check options...]]
set -u
cd "$(dirname "$0")/.." || exit 1
OUT=${1:?usage: sh tools/gpu-session.sh OUT_DIR [LIMIT_SECONDS [gpu_check options...]]}
LIMIT=${2:-560}
shift; [ $# -gt 0 ] && shift
START=$(date +%s)
PY=$(command -v python3 || command -v python) || { echo "no python3 or python" >&2; exit 1; }
ENV_DIR=${TMPDIR:-/tmp}/leukopipe-gpu-env
mkdir -p "$OUT"
SETUP="$OUT/setup.log"
PINS=$(grep -E '^(snakemake|jsonschema|submitit|tabulate)==' requirements.txt | tr '\n' ' ')
echo "python: $PY ($("$PY" -V 2>&1)); wheels: $(ls .whl/*.whl 2>/dev/null | wc -l)" | tee "$SETUP"
RUN=$PY
if "$PY" -m venv --system-site-packages "$ENV_DIR" >>"$SETUP" 2>&1; then
  RUN=$ENV_DIR/bin/python
  # shellcheck disable=SC2086
  "$RUN" -m pip install --no-index --find-links .whl --quiet $PINS >>"$SETUP" 2>&1 \
    || echo "pip install into the venv failed (see $SETUP); the check runs without those tools"
  # the checkout itself, editable (offline: the system's setuptools, else the one in .whl):
  # the installed package is how the check, its children and the pipeline's jobs import it
  "$RUN" -m pip install --no-index --find-links .whl --no-deps --quiet --no-build-isolation \
    -e . >>"$SETUP" 2>&1 \
    || "$RUN" -m pip install --no-index --find-links .whl --no-deps --quiet -e . >>"$SETUP" 2>&1 \
    || echo "pip install -e . failed (see $SETUP); the check cannot import leukopipe"
else
  # no ensurepip here: the system pip puts the wheels into a folder on PYTHONPATH instead
  echo "venv unavailable; installing into $ENV_DIR-site" | tee -a "$SETUP"
  # shellcheck disable=SC2086
  "$PY" -m pip install --no-index --find-links .whl --quiet --target "$ENV_DIR-site" $PINS \
    >>"$SETUP" 2>&1 || echo "pip install --target failed (see $SETUP)"
  # the one place the checkout's src/ goes on PYTHONPATH: pip cannot install a package
  # editable into a --target folder, and a copied package would not know its checkout
  export PYTHONPATH="$ENV_DIR-site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
LEFT=$((LIMIT - ($(date +%s) - START)))
echo "setup took $((LIMIT - LEFT)) s; the check gets $((LEFT - 15)) s" | tee -a "$SETUP"
# the check ends its own parts by --deadline; timeout is the backstop (SIGTERM, then SIGKILL)
timeout -k 10 $((LEFT - 5)) "$RUN" scripts/gpu_check.py --out "$OUT" --deadline $((LEFT - 15)) "$@"
status=$?
echo "gpu-check exit $status after $(($(date +%s) - START)) s" | tee -a "$SETUP"
exit $status
