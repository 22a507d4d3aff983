"""Where a result came from: code version, package versions, host and time.

Every metrics file embeds :func:`provenance` so that a number in a table can be traced back to
the commit and environment that produced it. A checkpoint embeds only :func:`code_provenance`,
what determines its weights, so that identical runs write identical bytes; its host and time go
to the ``provenance.json`` beside it (:func:`run_stamp`).
"""

from __future__ import annotations

import datetime as _dt
import platform
import socket
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from leukopipe import __version__

_REPO = Path(__file__).resolve().parents[3]


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the checkout (with ``-dirty`` when it has local edits).

    Falls back to the package version when the code does not run from a git checkout
    (for example from an installed wheel on a compute node).
    """
    try:
        commit = subprocess.run(
            ["git", "-C", str(_REPO), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(_REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"leukopipe-{__version__}"
    return f"{commit}-dirty" if dirty else commit


def code_provenance() -> dict[str, Any]:
    """The code version, key package versions and the Python version: no host, no time."""
    versions = {"leukopipe": __version__}
    # read from the installed metadata: importing torch just to ask its version costs seconds
    for name in (
        "numpy",
        "pandas",
        "pyarrow",
        "pillow",
        "torch",
        "torchvision",
        "timm",
        "scikit-learn",
        "snakemake",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "code_version": code_version(),
        "versions": versions,
        "python": platform.python_version(),
    }


def run_stamp() -> dict[str, str]:
    """Where and when this runs: the host name and the UTC time (seconds)."""
    return {
        "host": socket.gethostname(),
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def provenance() -> dict[str, Any]:
    """A JSON-able record of the code version, key package versions, host and UTC time."""
    return {**code_provenance(), **run_stamp()}
