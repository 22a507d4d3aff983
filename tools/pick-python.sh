#!/bin/sh
# Prints the interpreter `make env` builds .venv with: the first of python3.13, python3.12,
# python3.11, python3 that runs, is >= 3.11, and for which the package index has the torch and
# torchvision wheels pinned in requirements.txt. When the index cannot be reached at all: the
# first one that runs and is >= 3.11 (with a warning). Exits 1 when no candidate qualifies.
# CANDIDATES="..." replaces the list (tests use it).
cd "$(dirname "$0")/.." || exit 1
torch=$(sed -n 's/^torch==\([^ #]*\).*/\1/p' requirements.txt)
vision=$(sed -n 's/^torchvision==\([^ #]*\).*/\1/p' requirements.txt)
first_runnable=""
index_reached=0
for py in ${CANDIDATES:-python3.13 python3.12 python3.11 python3}; do
  # a pyenv shim or a broken link can be on PATH and still not run: run it, do not trust it
  ver=$("$py" -c 'import sys; assert sys.version_info >= (3, 11); print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
  [ -n "$first_runnable" ] || first_runnable=$py
  pip_py=$py
  "$py" -m pip --version >/dev/null 2>&1 || pip_py=python3
  found=0
  asked=0
  for pin in "torch $torch" "torchvision $vision"; do
    set -- $pin
    out=$("$pip_py" -m pip index versions "$1" --python-version "$ver" --only-binary=:all: 2>/dev/null) || continue
    index_reached=1
    asked=1
    echo "$out" | grep '^Available versions:' | tr ' ,' '\n\n' | grep -qx "$2" && found=$((found + 1))
  done
  if [ "$found" = 2 ]; then
    echo "$py"
    exit 0
  fi
  [ "$asked" = 1 ] && echo "pick-python: skipping $py (Python $ver): no torch==$torch + torchvision==$vision wheels for it" >&2
done
if [ "$index_reached" = 0 ] && [ -n "$first_runnable" ]; then
  echo "pick-python: package index not reachable; using $first_runnable unchecked" >&2
  echo "$first_runnable"
  exit 0
fi
echo "pick-python: none of ${CANDIDATES:-python3.13 python3.12 python3.11 python3} is >= 3.11 with torch==$torch and torchvision==$vision wheels" >&2
exit 1
