"""Bringing a library's existing data in: MARC catalogue records and patron lists.

Layer: `ils` (the core). Imports pymarc, SQLAlchemy, `ils.db`, `ils.models`,
`ils.secrets` and the standard library; nothing above the core. The click
commands live in `ils.importing.commands` and are imported only by the CLI.
"""

from __future__ import annotations

from ils.importing.marc import import_marc
from ils.importing.patrons import import_patrons
from ils.importing.report import (
    ImportAbortedError,
    ImportProblem,
    ImportReport,
    ImportSetupError,
)

__all__ = [
    "ImportAbortedError",
    "ImportProblem",
    "ImportReport",
    "ImportSetupError",
    "import_marc",
    "import_patrons",
]
