"""Finding branches, item types and patron categories by code, making missing ones.

Layer: `ils` (the core). Imports SQLAlchemy, `ils.models` and the standard library.

Import files speak in the library's codes. A code the database does not know yet
is created on the fly with the code as its name, inside one institution, and
each creation is reported once so staff can name it properly later.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ils.importing.report import ImportSetupError, ReportTally
from ils.models import Branch, Institution, ItemType, PatronCategory

DEFAULT_INSTITUTION_CODE = "DEFAULT"


def choose_institution_code(session: Session, wanted: str | None) -> str:
    """The code of the institution an import creates branches in.

    The one asked for (created when missing), else the only one there is, else
    `DEFAULT` on an empty database.

    Raises:
        ImportSetupError: when none was asked for and there are several.
    """
    if wanted:
        return wanted
    codes = session.scalars(select(Institution.code).order_by(Institution.id)).all()
    if len(codes) > 1:
        raise ImportSetupError(
            f"the database has {len(codes)} institutions ({', '.join(codes)});"
            " say which one new branches belong to with --institution CODE"
        )
    return codes[0] if codes else DEFAULT_INSTITUTION_CODE


def only_branch_code(session: Session) -> str | None:
    """The code of the database's one branch, or None when there are none or many."""
    if session.scalar(select(func.count()).select_from(Branch)) != 1:
        return None
    return session.scalar(select(Branch.code))


class CodeBook:
    """Ids of branches, item types and patron categories by code, for one import.

    Ids found or created are remembered across the import's transactions; the
    import is abandoned if a transaction that created one is rolled back, so a
    remembered id never outlives its row.
    """

    def __init__(self, institution_code: str | None, tally: ReportTally) -> None:
        self._institution_code = institution_code
        self._institution_id: int | None = None
        self._tally = tally
        self._branches: dict[str, int] = {}
        self._item_types: dict[str, int] = {}
        self._categories: dict[str, int] = {}

    def _created(self, what: str, code: str, position: int) -> None:
        self._tally.created.append(f"{what} {code} (first seen at #{position})")

    def institution_id(self, session: Session, position: int) -> int:
        """The id of the import's institution, created when it does not exist."""
        if self._institution_id is None:
            code = self._institution_code
            if code is None:
                raise RuntimeError("this import was not meant to create branches")
            found = session.scalar(
                select(Institution.id).where(Institution.code == code)
            )
            if found is None:
                institution = Institution(code=code, name=code)
                session.add(institution)
                session.flush()
                found = institution.id
                self._created("institution", code, position)
            self._institution_id = found
        return self._institution_id

    def branch_id(self, session: Session, code: str, position: int) -> int:
        """The id of branch `code`, created in the import's institution if missing."""
        if code not in self._branches:
            found = session.scalar(select(Branch.id).where(Branch.code == code))
            if found is None:
                branch = Branch(
                    code=code,
                    name=code,
                    institution_id=self.institution_id(session, position),
                )
                session.add(branch)
                session.flush()
                found = branch.id
                self._created("branch", code, position)
            self._branches[code] = found
        return self._branches[code]

    def existing_branch_id(self, session: Session, code: str) -> int | None:
        """The id of branch `code`, or None; never creates one."""
        if code not in self._branches:
            found = session.scalar(select(Branch.id).where(Branch.code == code))
            if found is None:
                return None
            self._branches[code] = found
        return self._branches[code]

    def item_type_id(self, session: Session, code: str, position: int) -> int:
        """The id of item type `code`, created (media type 001, book) if missing."""
        if code not in self._item_types:
            found = session.scalar(select(ItemType.id).where(ItemType.code == code))
            if found is None:
                item_type = ItemType(code=code, name=code, media_type="001")
                session.add(item_type)
                session.flush()
                found = item_type.id
                self._created("item type", code, position)
            self._item_types[code] = found
        return self._item_types[code]

    def category_id(self, session: Session, code: str, position: int) -> int:
        """The id of patron category `code`, created if missing."""
        if code not in self._categories:
            found = session.scalar(
                select(PatronCategory.id).where(PatronCategory.code == code)
            )
            if found is None:
                category = PatronCategory(code=code, name=code)
                session.add(category)
                session.flush()
                found = category.id
                self._created("patron category", code, position)
            self._categories[code] = found
        return self._categories[code]
