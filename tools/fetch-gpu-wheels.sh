#!/bin/sh
# Wheels for a GPU machine without network that has PyTorch & co. but not the workflow tools
# (docs/benchmarks.md, "GPU rows"): snakemake, jsonschema, submitit and tabulate at the versions
# pinned in requirements.txt, with everything they need, and setuptools (for installing the
# checkout offline) into .whl/ (git-ignored; carry it).
# Pure-Python wheels serve any Python 3; the compiled ones are fetched for CPython 3.11, 3.12
# and 3.13 on manylinux x86_64, because the GPU machine's Python version is not known here.
# Prints the compiled ones at the end. Needs the package registry. PYTHON=... picks the pip.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl
pins=$(grep -E '^(snakemake|jsonschema|submitit|tabulate)==' requirements.txt | tr '\n' ' ')
mkdir -p "$DEST"
# builds the few sdist-only pure packages (e.g. connection_pool) into wheels too
# (+ setuptools: tools/gpu-session.sh installs the checkout with it, offline)
"$PY" -m pip wheel --quiet -w "$DEST" $pins "setuptools>=68"
compiled=""
for whl in "$DEST"/*.whl; do
  case "$whl" in
    *-none-any.whl | *-abi3-*) ;;
    *) name=$(basename "$whl" | cut -d- -f1); version=$(basename "$whl" | cut -d- -f2)
       compiled="$compiled $name==$version" ;;
  esac
done
for v in 3.11 3.12 3.13; do
  for req in $compiled; do
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
      --python-version "$v" --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "$req" \
      || echo "fetch-gpu-wheels: no $req wheel for CPython $v" >&2
  done
done
echo "fetch-gpu-wheels: $(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST/"
echo "fetch-gpu-wheels: compiled (one wheel per CPython version):$compiled"
