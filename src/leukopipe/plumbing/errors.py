"""The one base class of expected, user-fixable failures.

Step scripts print a :class:`UserError` as one line and exit 1 (``leukopipe.plumbing.cli.run``);
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix (bad config, bad data, missing file); the message says how."""


class InvalidInputError(UserError, ValueError):
    """An input a step was given (a file's content, a manifest, a setting or flag) cannot be
    used; the message says which and what to do."""


class MissingInputError(UserError, FileNotFoundError):
    """A file a step needs does not exist; the message names it and what makes it."""
