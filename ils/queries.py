"""Reading the core's tables: look-ups, loan rules and the views handed to callers.

Layer: `ils`, the bottom. Used by the circulation service inside its units of
work; every function takes the open `Session`. Each `lock=True` asks for a row
lock on PostgreSQL and does nothing on SQLite, where the write unit already
holds the database.

The row lock is `FOR NO KEY UPDATE`, not `FOR UPDATE`: it still makes a second
locker wait, but not the `FOR KEY SHARE` lock that PostgreSQL's foreign-key check
takes on the referenced patron or item when a loan or log row is inserted. With
`FOR UPDATE`, such an insert waited on another transaction's patron lock while
holding an item, and checkouts and checkins deadlocked.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils.calendar import BranchCalendar, OpeningHours
from ils.models import (
    BibRecord,
    Branch,
    BranchClosedDay,
    BranchHours,
    Institution,
    Item,
    ItemType,
    Loan,
    LoanRule,
    Patron,
    PatronBlock,
    PatronCategory,
)
from ils.results import ItemView, LoanView, PatronView
from ils.rules.matrix import RuleChoice, choose_rule, pattern_of

_FALLBACK_CURRENCY = "USD"


def branch_by_code(session: Session, code: str) -> Branch | None:
    return session.scalars(sa.select(Branch).where(Branch.code == code)).first()


def patron_by_barcode(
    session: Session, barcode: str, *, lock: bool = False
) -> Patron | None:
    query = sa.select(Patron).where(Patron.barcode == barcode)
    if lock:
        query = query.with_for_update(key_share=True)
    return session.scalars(query).first()


def lock_patron(session: Session, patron_id: int) -> None:
    """Lock one patron's row, as `patron_by_barcode(lock=True)` would."""
    session.execute(
        sa.select(Patron.id)
        .where(Patron.id == patron_id)
        .with_for_update(key_share=True)
    )


def item_by_barcode(
    session: Session, barcode: str, *, lock: bool = False
) -> Item | None:
    query = sa.select(Item).where(Item.barcode == barcode)
    if lock:
        query = query.with_for_update(key_share=True)
    return session.scalars(query).first()


def open_loan(session: Session, item: Item, *, lock: bool = False) -> Loan | None:
    query = sa.select(Loan).where(Loan.item_id == item.id, Loan.returned_at.is_(None))
    if lock:
        query = query.with_for_update(key_share=True)
    return session.scalars(query).first()


def open_blocks(session: Session, patron: Patron) -> Sequence[PatronBlock]:
    return session.scalars(
        sa.select(PatronBlock)
        .where(PatronBlock.patron_id == patron.id, PatronBlock.lifted_at.is_(None))
        .order_by(PatronBlock.id)
    ).all()


def loan_rule_choice(
    session: Session, *, branch_id: int, category_id: int, item_type_id: int
) -> RuleChoice:
    """The rule for a checkout at a branch, with the more specific ones that were
    absent (see `ils.rules.matrix` for the order)."""
    rules = session.scalars(
        sa.select(LoanRule).where(
            sa.or_(LoanRule.branch_id.is_(None), LoanRule.branch_id == branch_id),
            sa.or_(
                LoanRule.patron_category_id.is_(None),
                LoanRule.patron_category_id == category_id,
            ),
            sa.or_(
                LoanRule.item_type_id.is_(None), LoanRule.item_type_id == item_type_id
            ),
        )
    )
    return choose_rule(
        rules, branch_id=branch_id, category_id=category_id, item_type_id=item_type_id
    )


def loan_rule(
    session: Session, *, branch_id: int, category_id: int, item_type_id: int | None
) -> LoanRule | None:
    """The most specific rule for a checkout at a branch.

    An `item_type_id` of None asks for the patron's general rule: one that names
    no item type.
    """
    if item_type_id is not None:
        return loan_rule_choice(
            session,
            branch_id=branch_id,
            category_id=category_id,
            item_type_id=item_type_id,
        ).rule
    rules = session.scalars(
        sa.select(LoanRule).where(
            sa.or_(LoanRule.branch_id.is_(None), LoanRule.branch_id == branch_id),
            sa.or_(
                LoanRule.patron_category_id.is_(None),
                LoanRule.patron_category_id == category_id,
            ),
            LoanRule.item_type_id.is_(None),
        )
    )
    return max(rules, key=lambda rule: pattern_of(rule).weight, default=None)


def branch_calendar(session: Session, branch: Branch, zone: ZoneInfo) -> BranchCalendar:
    """The branch's opening hours and closed dates, reckoned in `zone`."""
    hours = {
        row.weekday: OpeningHours(opens=row.opens, closes=row.closes)
        for row in session.scalars(
            sa.select(BranchHours).where(BranchHours.branch_id == branch.id)
        )
    }
    closed = frozenset(
        session.scalars(
            sa.select(BranchClosedDay.day).where(BranchClosedDay.branch_id == branch.id)
        )
    )
    return BranchCalendar(zone=zone, hours=hours, closed=closed)


def count_open_loans(
    session: Session, patron: Patron, item_type_id: int | None = None
) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(Loan)
        .where(Loan.patron_id == patron.id, Loan.returned_at.is_(None))
    )
    if item_type_id is not None:
        query = query.join(Item, Item.id == Loan.item_id).where(
            Item.item_type_id == item_type_id
        )
    return session.scalar(query) or 0


def over_limit(
    session: Session, patron: Patron, branch_id: int, rule: LoanRule
) -> bool:
    """Whether one more loan would pass the applicable rule's or the general limit.

    A rule for one item type limits loans of that type; a rule for any type
    limits all the patron's loans. The patron's general rule at the checkout
    branch (for any type) limits all loans as well.
    """
    if count_open_loans(session, patron, rule.item_type_id) >= rule.max_loans:
        return True
    general = loan_rule(
        session, branch_id=branch_id, category_id=patron.category_id, item_type_id=None
    )
    if general is None or general.id == rule.id:
        return False
    return count_open_loans(session, patron) >= general.max_loans


def card_expired(patron: Patron, moment: datetime, zone: ZoneInfo) -> bool:
    today: date = moment.astimezone(zone).date()
    return patron.expires_on is not None and patron.expires_on < today


def currency_of(session: Session, branch_id: int) -> str:
    currency = session.scalar(
        sa.select(Institution.currency)
        .join(Branch, Branch.institution_id == Institution.id)
        .where(Branch.id == branch_id)
    )
    return currency or _FALLBACK_CURRENCY


# Views: plain values built inside the unit of work, safe to hand to any thread.


def item_view(session: Session, item: Item) -> ItemView:
    record: BibRecord = item.record
    item_type: ItemType = item.item_type
    loan = open_loan(session, item)
    borrower = None if loan is None or loan.patron is None else loan.patron.barcode
    return ItemView(
        barcode=item.barcode,
        title=record.title,
        author=record.author,
        call_number=item.call_number,
        item_type_code=item_type.code,
        media_type=item_type.media_type,
        home_branch_code=item.home_branch.code,
        current_branch_code=item.current_branch.code,
        location=item.location,
        collection=item.collection,
        status=item.status,
        on_loan=loan is not None,
        due_at=None if loan is None else loan.due_at,
        borrower_barcode=borrower,
        price_minor=item.price_minor,
        currency=currency_of(session, item.home_branch_id),
    )


def patron_view(
    session: Session,
    patron: Patron,
    now: datetime,
    zone: ZoneInfo,
    *,
    pin_valid: bool | None,
    branch_id: int | None = None,
) -> PatronView:
    """The patron's account; `max_loans` is from the general rule at `branch_id`
    (the patron's home branch when None)."""
    category: PatronCategory = patron.category
    blocks = open_blocks(session, patron)
    rows = session.execute(
        sa.select(Loan, Item.barcode, BibRecord.title)
        .join(Item, Item.id == Loan.item_id)
        .join(BibRecord, BibRecord.id == Item.record_id)
        .where(Loan.patron_id == patron.id, Loan.returned_at.is_(None))
        .order_by(Loan.due_at, Loan.id)
    ).all()
    loans = tuple(
        LoanView(
            item_barcode=barcode,
            title=title,
            checked_out_at=loan.checked_out_at,
            due_at=loan.due_at,
            overdue=loan.due_at < now,
            renewals=loan.renewals,
        )
        for loan, barcode, title in rows
    )
    general = loan_rule(
        session,
        branch_id=patron.home_branch_id if branch_id is None else branch_id,
        category_id=patron.category_id,
        item_type_id=None,
    )
    expired = card_expired(patron, now, zone)
    blocked = bool(blocks)
    full_name = " ".join(part for part in (patron.firstname, patron.surname) if part)
    return PatronView(
        barcode=patron.barcode,
        surname=patron.surname,
        firstname=patron.firstname,
        full_name=full_name,
        category_code=category.code,
        home_branch_code=patron.home_branch.code,
        expires_on=patron.expires_on,
        expired=expired,
        card_lost=patron.card_lost,
        blocked=blocked,
        block_notes=tuple(block.note for block in blocks),
        email=patron.email,
        phone=patron.phone,
        has_pin=patron.pin_hash is not None,
        pin_valid=pin_valid,
        loans=loans,
        overdue_count=sum(loan.overdue for loan in loans),
        max_loans=None if general is None else general.max_loans,
        # TODO(#4): fees are not modelled yet, so no patron owes anything.
        fines_minor=0,
        currency=currency_of(session, patron.home_branch_id),
        may_borrow=not (expired or patron.card_lost or blocked),
    )
