"""Reading the pipeline's own JSON and parquet files so that a damaged one names itself.

A truncated or overwritten ``metrics.json`` or manifest would otherwise end a step in a
``JSONDecodeError`` or ``ArrowInvalid`` traceback that names no file. Here it is one line: the
file, what is wrong with it, and what to do (rerun the step that writes it). A missing file
stays a FileNotFoundError, so callers that test for it keep working.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from leukopipe.plumbing.errors import InvalidInputError


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def damaged(path: str | os.PathLike[str], kind: str, exc: BaseException) -> InvalidInputError:
    """The one-line error for a ``kind`` file (``JSON``, ``parquet``) that cannot be read."""
    return InvalidInputError(
        f"{path}: not a readable {kind} file ({_first_line(exc)}); it is damaged or truncated: "
        "delete it and rerun the step that writes it"
    )


def read_json(path: str | os.PathLike[str]) -> Any:
    """The parsed content of a JSON file; a damaged file raises InvalidInputError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise damaged(path, "JSON", exc) from exc


def read_parquet(path: str | os.PathLike[str], **kwargs: Any) -> pd.DataFrame:
    """``pd.read_parquet``; a damaged file raises InvalidInputError naming it."""
    try:
        return pd.read_parquet(path, **kwargs)
    except pa.ArrowException as exc:
        # (a missing file is a FileNotFoundError, not an ArrowException, and stays one)
        raise damaged(path, "parquet", exc) from exc
