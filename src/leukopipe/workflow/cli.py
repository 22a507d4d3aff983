"""Shared plumbing of the step scripts: logging and turning known errors into one clear line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from leukopipe.errors import UserError

# errors whose message already tells the user what is wrong and what to do
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    FileNotFoundError,
    ValueError,
)


def parser(description: str) -> argparse.ArgumentParser:
    """An ArgumentParser that shows defaults in --help."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def setup_logging(verbose: bool = False) -> None:
    """Timestamped log lines on stderr (Snakemake sends stderr to the rule's log file)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stderr,
    )


def run(
    main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None
) -> int:
    """Run a script's main; known data and config errors exit 1 with their message, no traceback."""
    setup_logging()
    try:
        return int(main(argv) or 0)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
