"""A small library to test the core against, built through the real schema.

One institution (currency GBP) with two branches in different time zones:
NORTH in Europe/London and WEST in America/Los_Angeles. Two patron categories
(ADULT, CHILD), three item types (BOOK "001", DVD "006", REF "001") and four
loan rules, one at each level of precedence:

| category | item type | loan days | renewals | max loans |
| -------- | --------- | --------- | -------- | --------- |
| ADULT    | DVD       | 3         | 0        | 2         |
| ADULT    | any       | 14        | 1        | 3         |
| any      | DVD       | 7         | 0        | 1         |
| any      | any       | 28        | 2        | 10        |
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from ils.db import Database
from ils.models import (
    BibRecord,
    Branch,
    Institution,
    Item,
    ItemStatus,
    ItemType,
    LoanRule,
    Patron,
    PatronBlock,
    PatronCategory,
)
from ils.schema import upgrade_database
from ils.secrets import hash_secret

PIN = "4321"


@dataclass(frozen=True)
class Library:
    """The test library's database and the builders that add to it."""

    database: Database

    def _id(self, model: type[Branch | PatronCategory | ItemType], code: str) -> int:
        with self.database.read() as session:
            found = session.scalar(sa.select(model.id).where(model.code == code))
        assert found is not None, f"no {model.__name__} {code}"
        return found

    def add_patron(
        self,
        barcode: str,
        *,
        surname: str = "Okafor",
        firstname: str = "Ada",
        category: str = "ADULT",
        home_branch: str = "NORTH",
        pin: str | None = None,
        expires_on: date | None = None,
        card_lost: bool = False,
        block_note: str | None = None,
    ) -> None:
        """Add a patron, with a hashed PIN and an unlifted block if asked."""
        category_id = self._id(PatronCategory, category)
        branch_id = self._id(Branch, home_branch)
        with self.database.transaction() as session:
            patron = Patron(
                barcode=barcode,
                surname=surname,
                firstname=firstname,
                category_id=category_id,
                home_branch_id=branch_id,
                pin_hash=None if pin is None else hash_secret(pin),
                expires_on=expires_on,
                card_lost=card_lost,
            )
            session.add(patron)
            session.flush()
            if block_note is not None:
                session.add(
                    PatronBlock(patron_id=patron.id, note=block_note, placed_by="staff")
                )

    def add_item(
        self,
        barcode: str,
        *,
        title: str = "The Tide Tables",
        author: str | None = "Mele Tupou",
        item_type: str = "BOOK",
        branch: str = "NORTH",
        status: ItemStatus = ItemStatus.AVAILABLE,
        price_minor: int | None = 1299,
    ) -> None:
        """Add an item with a record of its own."""
        type_id = self._id(ItemType, item_type)
        branch_id = self._id(Branch, branch)
        with self.database.transaction() as session:
            record = BibRecord(title=title, author=author)
            session.add(record)
            session.flush()
            session.add(
                Item(
                    barcode=barcode,
                    record_id=record.id,
                    home_branch_id=branch_id,
                    current_branch_id=branch_id,
                    item_type_id=type_id,
                    call_number="551.46 TUP",
                    location="Adult non-fiction",
                    status=status,
                    price_minor=price_minor,
                )
            )

    def delete_rule(self, category: str | None, item_type: str | None) -> None:
        """Remove one loan rule, e.g. the catch-all, to test its absence."""
        category_id = None if category is None else self._id(PatronCategory, category)
        type_id = None if item_type is None else self._id(ItemType, item_type)
        with self.database.transaction() as session:
            session.execute(
                sa.delete(LoanRule).where(
                    LoanRule.patron_category_id.is_(None)
                    if category_id is None
                    else LoanRule.patron_category_id == category_id,
                    LoanRule.item_type_id.is_(None)
                    if type_id is None
                    else LoanRule.item_type_id == type_id,
                )
            )


def build_library(url: str, *, pool_size: int = 20) -> Library:
    """Create the schema at `url` and fill in the institution, branches and rules."""
    upgrade_database(url)
    database = Database(url, pool_size=pool_size)
    with database.transaction() as session:
        institution = Institution(code="CITY", name="City Libraries", currency="GBP")
        session.add(institution)
        session.flush()
        session.add_all(
            [
                Branch(
                    institution_id=institution.id,
                    code="NORTH",
                    name="North Library",
                    timezone="Europe/London",
                ),
                Branch(
                    institution_id=institution.id,
                    code="WEST",
                    name="West Library",
                    timezone="America/Los_Angeles",
                ),
            ]
        )
        adult = PatronCategory(code="ADULT", name="Adult")
        child = PatronCategory(code="CHILD", name="Child")
        book = ItemType(code="BOOK", name="Book", media_type="001")
        dvd = ItemType(code="DVD", name="DVD", media_type="006")
        reference = ItemType(code="REF", name="Reference", media_type="001")
        session.add_all([adult, child, book, dvd, reference])
        session.flush()
        session.add_all(
            [
                LoanRule(
                    patron_category_id=adult.id,
                    item_type_id=dvd.id,
                    loan_days=3,
                    renewals_allowed=0,
                    max_loans=2,
                ),
                LoanRule(
                    patron_category_id=adult.id,
                    item_type_id=None,
                    loan_days=14,
                    renewals_allowed=1,
                    max_loans=3,
                ),
                LoanRule(
                    patron_category_id=None,
                    item_type_id=dvd.id,
                    loan_days=7,
                    renewals_allowed=0,
                    max_loans=1,
                ),
                LoanRule(
                    patron_category_id=None,
                    item_type_id=None,
                    loan_days=28,
                    renewals_allowed=2,
                    max_loans=10,
                ),
            ]
        )
    return Library(database=database)


class SettableClock:
    """A clock for the service that shows whatever time the test sets."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now
