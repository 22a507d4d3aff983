#!/usr/bin/env python
"""scripts/train.py with every epoch made LEUKOPIPE_TEST_EPOCH_PAUSE seconds longer.

For the preemption and time-limit tests (tests/train/test_preemption.py): a time limit or a requeue
must fall in the middle of a run whose epochs are otherwise a fraction of a second. The pause
is a sleep after each epoch's validation pass; it changes timing only, never results, so the
paced run and its unpaced retry must still reproduce an undisturbed run exactly.
"""

import os
import runpy
import sys
import time
from pathlib import Path

import leukopipe.train.loop as train_module

PAUSE = float(os.environ.get("LEUKOPIPE_TEST_EPOCH_PAUSE", "0") or 0)
_metrics = train_module.classification_metrics


def _paced_metrics(*args, **kwargs):
    time.sleep(PAUSE)
    return _metrics(*args, **kwargs)


if PAUSE > 0:
    train_module.classification_metrics = _paced_metrics
script = Path(__file__).resolve().parents[2] / "scripts" / "train.py"
sys.argv[0] = str(script)
runpy.run_path(str(script), run_name="__main__")
