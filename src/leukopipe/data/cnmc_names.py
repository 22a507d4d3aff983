"""C-NMC file names: ``UID_<subject>_<image>_<cell>_<all|hem>.bmp``.

ALL subjects are plain numbers; Hem subjects carry an ``H`` prefix that some copies write in
lowercase. Subject 11 and subject H11 are different people, so the prefix is kept (as ``H``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from leukopipe.plumbing.errors import InvalidInputError

# The one class table; index = label: 0 = Hem (healthy), 1 = ALL (leukemic).
CLASS_NAMES = ("hem", "all")  # as in file and folder names, manifests and checkpoints
DISPLAY_NAMES = ("Hem", "ALL")  # as printed in messages, tables and figures
LABEL_OF = {name: i for i, name in enumerate(CLASS_NAMES)}

_NAME = re.compile(r"^UID_([hH]?)(\d+)_(\d+)_(\d+)_(all|hem)\.bmp$", re.IGNORECASE)


@dataclass(frozen=True)
class CellName:
    """The parts of a C-NMC cell file name."""

    subject: str  # "11" or "H11" (prefix normalised to upper case)
    image: int
    cell: int
    class_name: str  # "all" or "hem"

    @property
    def label(self) -> int:
        return LABEL_OF[self.class_name]


def parse_name(filename: str) -> CellName:
    """Parse a C-NMC file name; raise ValueError naming the file when it does not fit."""
    m = _NAME.match(filename)
    if m is None:
        raise InvalidInputError(
            f"{filename}: not a C-NMC cell file name"
            " (expected UID_<subject>_<image>_<cell>_<all|hem>.bmp)"
        )
    prefix, number, image, cell, cls = m.groups()
    return CellName(
        subject=("H" if prefix else "") + number,
        image=int(image),
        cell=int(cell),
        class_name=cls.lower(),
    )
