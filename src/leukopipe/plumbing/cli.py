"""Shared plumbing of the step scripts: logging and turning known errors into one clear line."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import sys
from collections.abc import Callable, Sequence

from leukopipe.plumbing.errors import UserError
from leukopipe.plumbing.interrupt import StepInterrupted
from leukopipe.plumbing.os_errors import describe

# errors whose message already tells the user what is wrong and what to do
# (a ValueError or KeyError from numpy, pandas or torch is a bug and keeps its traceback)
USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)


class _DefaultsOnce(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: ...)" only to help texts that do not state their default already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "default" in text.lower() else super()._get_help_string(action)


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser that shows each default once in --help; its description is the first
    paragraph of ``doc`` (a script's docstring), whole sentences, not its first line."""
    first = (doc or "").strip().split("\n\n")[0]
    return argparse.ArgumentParser(
        description=" ".join(first.split()), formatter_class=_DefaultsOnce
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
    """Run a script's main; known data and config errors exit 1 with their message, no traceback.

    Operating-system errors the user can fix (full disk, read-only or forbidden folder) are such
    errors too; any other OSError is a bug and keeps its traceback. A step stopped by
    SIGTERM/SIGUSR1 exits 128 + signal.
    """
    setup_logging()
    # a fatal signal in this process (SIGBUS, SIGSEGV) still leaves a traceback in the log
    with contextlib.suppress(AttributeError, ValueError, OSError):  # stderr without a descriptor
        faulthandler.enable()
    try:
        return int(main(argv) or 0)
    except StepInterrupted as exc:
        logging.getLogger("leukopipe").warning("%s (exit code %d)", exc, exc.exit_code)
        return exc.exit_code
    except OSError as exc:
        # a UserError or a FileNotFoundError made with its own message (no errno) says it already
        message = None if isinstance(exc, UserError) or exc.errno is None else describe(exc)
        if message is None:
            if not isinstance(exc, USER_ERRORS):
                raise
            message = str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
