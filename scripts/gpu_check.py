#!/usr/bin/env python3
"""GPU check: the real pipeline, resume after kills and the benchmark, on one node in < 9 min.

    python3 scripts/gpu_check.py --out gpu-check              # on a CUDA node (make gpu-check)
    python3 scripts/gpu_check.py --out /tmp/gc --device cpu --tiny   # the same code, tiny, CPU

Writes gpu-check.md (the summary) and snakemake.log into --out. Needs only the package's own
dependencies; the checkout's src/ is put on the path, so nothing has to be installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# run from a bare checkout with python3 alone: the package is imported from src/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from leukopipe_tools.gpu_check import main

if __name__ == "__main__":
    sys.exit(main())
