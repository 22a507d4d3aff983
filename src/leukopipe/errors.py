"""The one base class of expected, user-fixable failures.

Step scripts print a :class:`UserError` as one line and exit 1 (``leukopipe.workflow.cli.run``);
any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A failure the user can fix (bad config, bad data, missing file); the message says how."""
