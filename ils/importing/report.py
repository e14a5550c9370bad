"""What an import did: counts, the codes it created and the problems it met.

Layer: `ils` (the core). Imports SQLAlchemy's exceptions and the standard library.

An import never prints or logs; it returns an `ImportReport` and the command
line shows it to the operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportProblem:
    """One thing that went wrong, and where in the input it was.

    `position` is a MARC file's 1-based record number, or a CSV file's 1-based
    line number (the header is line 1). Zero means the whole file. `column` names
    the CSV column at fault, when one is.
    """

    position: int
    message: str
    column: str | None = None

    def __str__(self) -> str:
        where = "file" if self.position == 0 else f"#{self.position}"
        if self.column is not None:
            where = f"{where}, column {self.column}"
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportReport:
    """The outcome of one import.

    Attributes:
        read: records (MARC) or data rows (CSV) read from the file.
        imported: records or rows that were stored as new rows.
        updated: existing rows that were overwritten (patrons with `update`).
        skipped: records or rows that were not stored at all.
        items_created: items stored (MARC only).
        created: codes made on the fly, such as "branch EAST", each once.
        problems: every warning and refusal, in file order.
        already: rows found already stored by an earlier run (loans, holds and
            fees), neither stored again nor refused.
        dry_run: nothing was stored; `imported` counts what would have been.
    """

    read: int = 0
    imported: int = 0
    updated: int = 0
    skipped: int = 0
    items_created: int = 0
    created: tuple[str, ...] = ()
    problems: tuple[ImportProblem, ...] = ()
    already: int = 0
    dry_run: bool = False

    @property
    def stored_anything(self) -> bool:
        """Whether the import changed the database at all."""
        if self.dry_run:
            return False
        return bool(self.imported or self.updated or self.items_created)


class ImportAbortedError(RuntimeError):
    """An import stopped part way because the database refused a whole batch.

    The batches committed before the failing one stay in the database; `report`
    counts only those. The failing batch was rolled back entirely.
    """

    def __init__(self, message: str, report: ImportReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(slots=True)
class ReportTally:
    """The mutable counterpart of `ImportReport`, filled in while importing."""

    read: int = 0
    imported: int = 0
    updated: int = 0
    skipped: int = 0
    items_created: int = 0
    created: list[str] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)
    already: int = 0

    def problem(
        self, position: int, message: str, *, column: str | None = None
    ) -> None:
        """Note a problem at `position` (a record or line number), in `column`."""
        self.problems.append(
            ImportProblem(position=position, message=message, column=column)
        )

    def sort_problems(self) -> None:
        """Put the problems in file order (a stable sort by position)."""
        self.problems.sort(key=lambda problem: problem.position)

    def freeze(self) -> ImportReport:
        """The report as it stands now."""
        return ImportReport(
            read=self.read,
            imported=self.imported,
            updated=self.updated,
            skipped=self.skipped,
            items_created=self.items_created,
            created=tuple(self.created),
            problems=tuple(self.problems),
            already=self.already,
        )


class ImportSetupError(ValueError):
    """An import that cannot start, such as an unknown option value; nothing changed."""


def describe_database_error(error: SQLAlchemyError) -> str:
    """The driver's own message, without the SQL and its parameters.

    The parameters may hold patron data and PIN hashes, which must not reach a
    report or a console.
    """
    original = getattr(error, "orig", None)
    detail = str(original if original is not None else error).strip().splitlines()
    return f"{type(error).__name__}: {detail[0] if detail else ''}"
