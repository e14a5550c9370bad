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
from enum import Enum
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils.calendar import BranchCalendar, OpeningHours

# Holds as an item sees them live in ils.hold_queries; they are re-exported
# here, so that `queries.trapped_hold` and the rest keep working.
from ils.hold_queries import (
    OPEN_HOLD_STATUSES,
    TRAPPED_HOLD_STATUSES,
    fillable_holds,
    hold_queue_length,
    hold_queue_position,
    hold_view,
    holds_touch,
    trapped_hold,
)
from ils.hold_queries import both_forms as _both
from ils.models import (
    BibRecord,
    Branch,
    BranchClosedDay,
    BranchHours,
    Fee,
    Hold,
    HoldStatus,
    Institution,
    Item,
    ItemType,
    Loan,
    LoanRule,
    Patron,
    PatronBlock,
    PatronCategory,
)
from ils.results import ItemView, LoanView, PatronView, Refusal
from ils.rules.matrix import RuleChoice, choose_rule, pattern_of

__all__ = [
    "OPEN_HOLD_STATUSES",
    "READ",
    "TRAPPED_HOLD_STATUSES",
    "Ask",
    "automatic_block",
    "branch_by_code",
    "branch_calendar",
    "branch_zone",
    "card_expired",
    "count_open_loans",
    "currency_of",
    "fillable_holds",
    "hold_queue_length",
    "hold_queue_position",
    "hold_view",
    "holds_touch",
    "institution_of_patron",
    "item_by_barcode",
    "item_by_id",
    "item_view",
    "loan_rule",
    "loan_rule_choice",
    "loan_rules_for",
    "lock_patron",
    "open_blocks",
    "open_fees_minor",
    "open_loan",
    "over_limit",
    "overdue_loan_count",
    "patron_by_barcode",
    "patron_view",
    "trapped_hold",
]

_FALLBACK_CURRENCY = "USD"


class Ask(Enum):
    """`READ`: a view reads this itself; a caller that already knows it passes it."""

    READ = "read"


READ: Literal[Ask.READ] = Ask.READ

_BRANCH_BY_CODE = sa.select(Branch).where(Branch.code == sa.bindparam("code"))
_PATRON_BY_BARCODE = _both(
    sa.select(Patron).where(Patron.barcode == sa.bindparam("barcode"))
)
_PATRON_BY_ID = _both(sa.select(Patron).where(Patron.id == sa.bindparam("id")))
_ITEM_BY_BARCODE = _both(sa.select(Item).where(Item.barcode == sa.bindparam("barcode")))
_ITEM_BY_ID = _both(sa.select(Item).where(Item.id == sa.bindparam("id")))


def branch_by_code(session: Session, code: str) -> Branch | None:
    return session.scalars(_BRANCH_BY_CODE, {"code": code}).first()


def patron_by_barcode(
    session: Session, barcode: str, *, lock: bool = False
) -> Patron | None:
    query = _PATRON_BY_BARCODE[lock]
    return session.scalars(query, {"barcode": barcode}).first()


def lock_patron(session: Session, patron_id: int) -> Patron | None:
    """Lock one patron's row, as `patron_by_barcode(lock=True)` would, and give
    the patron (a caller that keeps it spares a later lazy load of that row)."""
    return session.scalars(_PATRON_BY_ID[True], {"id": patron_id}).first()


def item_by_barcode(
    session: Session, barcode: str, *, lock: bool = False
) -> Item | None:
    return session.scalars(_ITEM_BY_BARCODE[lock], {"barcode": barcode}).first()


def item_by_id(session: Session, item_id: int, *, lock: bool = False) -> Item | None:
    """An item by its id, locked (and read afresh) when `lock` is True."""
    return session.scalars(_ITEM_BY_ID[lock], {"id": item_id}).first()


def branch_zone(branch: Branch) -> ZoneInfo:
    """The time zone a branch reckons its dates in; UTC if its name is unknown."""
    try:
        return ZoneInfo(branch.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        # TODO(#4): `ils library branch` refuses a bad zone; one written to the
        # database any other way still falls back to UTC here, silently.
        return ZoneInfo("UTC")


_OPEN_LOAN = _both(
    sa.select(Loan).where(
        Loan.item_id == sa.bindparam("item_id"), Loan.returned_at.is_(None)
    )
)
_OPEN_BLOCKS = (
    sa.select(PatronBlock)
    .where(
        PatronBlock.patron_id == sa.bindparam("patron_id"),
        PatronBlock.lifted_at.is_(None),
    )
    .order_by(PatronBlock.id)
)


def open_loan(session: Session, item: Item, *, lock: bool = False) -> Loan | None:
    return session.scalars(_OPEN_LOAN[lock], {"item_id": item.id}).first()


def open_blocks(session: Session, patron: Patron) -> Sequence[PatronBlock]:
    return session.scalars(_OPEN_BLOCKS, {"patron_id": patron.id}).all()


# The rules that could apply at a branch to a patron category: for an item type,
# or (the general rule) for no type in particular.
_RULES_HERE = (
    sa.or_(
        LoanRule.branch_id.is_(None), LoanRule.branch_id == sa.bindparam("branch_id")
    ),
    sa.or_(
        LoanRule.patron_category_id.is_(None),
        LoanRule.patron_category_id == sa.bindparam("category_id"),
    ),
)
_RULES_FOR_TYPE = sa.select(LoanRule).where(
    *_RULES_HERE,
    sa.or_(
        LoanRule.item_type_id.is_(None),
        LoanRule.item_type_id == sa.bindparam("item_type_id"),
    ),
)
_GENERAL_RULES = sa.select(LoanRule).where(
    *_RULES_HERE, LoanRule.item_type_id.is_(None)
)


def loan_rule_choice(
    session: Session, *, branch_id: int, category_id: int, item_type_id: int
) -> RuleChoice:
    """The rule for a checkout at a branch, with the more specific ones that were
    absent (see `ils.rules.matrix` for the order)."""
    rules = session.scalars(
        _RULES_FOR_TYPE,
        {
            "branch_id": branch_id,
            "category_id": category_id,
            "item_type_id": item_type_id,
        },
    )
    return choose_rule(
        rules, branch_id=branch_id, category_id=category_id, item_type_id=item_type_id
    )


def loan_rules_for(
    session: Session, *, branch_id: int, category_id: int, item_type_id: int
) -> tuple[RuleChoice, LoanRule | None]:
    """`loan_rule_choice` and the patron's general rule (`loan_rule` with no item
    type) at once: the general rule's candidates are among the choice's."""
    rules = session.scalars(
        _RULES_FOR_TYPE,
        {
            "branch_id": branch_id,
            "category_id": category_id,
            "item_type_id": item_type_id,
        },
    ).all()
    choice = choose_rule(
        rules, branch_id=branch_id, category_id=category_id, item_type_id=item_type_id
    )
    general = max(
        (rule for rule in rules if rule.item_type_id is None),
        key=lambda rule: pattern_of(rule).weight,
        default=None,
    )
    return choice, general


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
        _GENERAL_RULES, {"branch_id": branch_id, "category_id": category_id}
    )
    return max(rules, key=lambda rule: pattern_of(rule).weight, default=None)


# Rows, not objects, read on the session's connection: a use case never
# changes a calendar, so there is nothing of its own to flush first.
_HOURS = BranchHours.__table__.c
_BRANCH_HOURS = sa.select(_HOURS.weekday, _HOURS.opens, _HOURS.closes).where(
    _HOURS.branch_id == sa.bindparam("branch_id")
)
_CLOSED = BranchClosedDay.__table__.c
_CLOSED_DAYS = sa.select(_CLOSED.day).where(
    _CLOSED.branch_id == sa.bindparam("branch_id")
)


def branch_calendar(session: Session, branch: Branch, zone: ZoneInfo) -> BranchCalendar:
    """The branch's opening hours and closed dates, reckoned in `zone`."""
    connection = session.connection()
    hours = {
        row.weekday: OpeningHours(opens=row.opens, closes=row.closes)
        for row in connection.execute(_BRANCH_HOURS, {"branch_id": branch.id})
    }
    closed = frozenset(connection.scalars(_CLOSED_DAYS, {"branch_id": branch.id}))
    return BranchCalendar(zone=zone, hours=hours, closed=closed)


def count_open_loans(
    session: Session, patron: Patron, item_type_id: int | None = None
) -> int:
    if item_type_id is None:
        return session.scalar(_OPEN_LOAN_COUNT, {"patron_id": patron.id}) or 0
    return (
        session.scalar(
            _OPEN_LOAN_COUNT_OF_TYPE,
            {"patron_id": patron.id, "item_type_id": item_type_id},
        )
        or 0
    )


_OPEN_LOAN_COUNT = (
    sa.select(sa.func.count())
    .select_from(Loan)
    .where(Loan.patron_id == sa.bindparam("patron_id"), Loan.returned_at.is_(None))
)
_OPEN_LOAN_COUNT_OF_TYPE = _OPEN_LOAN_COUNT.join(Item, Item.id == Loan.item_id).where(
    Item.item_type_id == sa.bindparam("item_type_id")
)


def over_limit(
    session: Session,
    patron: Patron,
    branch_id: int,
    rule: LoanRule,
    *,
    general: LoanRule | Literal[Ask.READ] | None = READ,
) -> bool:
    """Whether one more loan would pass the applicable rule's or the general limit.

    A rule for one item type limits loans of that type; a rule for any type
    limits all the patron's loans. The patron's general rule at the checkout
    branch (for any type) limits all loans as well; a caller that has it
    already passes it as `general`.
    """
    if count_open_loans(session, patron, rule.item_type_id) >= rule.max_loans:
        return True
    if general is READ:
        general = loan_rule(
            session,
            branch_id=branch_id,
            category_id=patron.category_id,
            item_type_id=None,
        )
    if general is None or general.id == rule.id:
        return False
    return count_open_loans(session, patron) >= general.max_loans


def card_expired(patron: Patron, moment: datetime, zone: ZoneInfo) -> bool:
    today: date = moment.astimezone(zone).date()
    return patron.expires_on is not None and patron.expires_on < today


_INSTITUTIONS = "ils.queries.institutions"


def _institution_of_branch(session: Session, branch_id: int) -> Institution | None:
    """A branch's institution, read once per unit of work.

    The session's identity map holds its objects weakly, so the institution is
    kept in `session.info` as well; being the identity map's object, it still
    shows any change the unit of work makes to it.
    """
    known: dict[int, Institution | None] = session.info.setdefault(_INSTITUTIONS, {})
    if branch_id not in known:
        branch = session.get(Branch, branch_id)
        known[branch_id] = (
            None if branch is None else session.get(Institution, branch.institution_id)
        )
    return known[branch_id]


def currency_of(session: Session, branch_id: int) -> str:
    institution = _institution_of_branch(session, branch_id)
    currency = None if institution is None else institution.currency
    return currency or _FALLBACK_CURRENCY


# Views: plain values built inside the unit of work, safe to hand to any thread.


def item_view(
    session: Session,
    item: Item,
    *,
    loan: Loan | Literal[Ask.READ] | None = READ,
    trapped: Hold | Literal[Ask.READ] | None = READ,
) -> ItemView:
    """The item as a terminal sees it. A caller that has just read or written the
    item's open loan or its trapped hold in this unit of work passes them (None
    for none), and they are not read again."""
    record: BibRecord = item.record
    item_type: ItemType = item.item_type
    if loan is READ:
        loan = open_loan(session, item)
    borrower = None if loan is None or loan.patron is None else loan.patron.barcode
    if trapped is READ:
        trapped = trapped_hold(session, item)
    queue_length = hold_queue_length(session, item)
    transit_to = item.transit_to_branch
    return ItemView(
        hold_queue_length=queue_length or 0,
        in_transit_to=None if transit_to is None else transit_to.code,
        on_hold_shelf=trapped is not None and trapped.status is HoldStatus.WAITING,
        hold_patron_barcode=(
            None
            if trapped is None or trapped.patron is None
            else trapped.patron.barcode
        ),
        hold_pickup_branch_code=(
            None if trapped is None else trapped.pickup_branch.code
        ),
        hold_pickup_deadline=None if trapped is None else trapped.pickup_deadline,
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


def open_fees_minor(session: Session, patron_id: int) -> int:
    """The sum of a patron's open fee balances, in minor units."""
    total = session.scalar(_OPEN_FEES, {"patron_id": patron_id})
    return int(total or 0)


_OPEN_FEES = sa.select(sa.func.coalesce(sa.func.sum(Fee.balance_minor), 0)).where(
    Fee.patron_id == sa.bindparam("patron_id"), Fee.balance_minor > 0
)


def overdue_loan_count(session: Session, patron_id: int, moment: datetime) -> int:
    """How many of a patron's open loans were due before `moment`."""
    count = session.scalar(_OVERDUE_COUNT, {"patron_id": patron_id, "moment": moment})
    return int(count or 0)


_OVERDUE_COUNT = _OPEN_LOAN_COUNT.where(Loan.due_at < sa.bindparam("moment"))


def institution_of_patron(session: Session, patron: Patron) -> Institution:
    """The institution a patron belongs to: that of their home branch."""
    institution = _institution_of_branch(session, patron.home_branch_id)
    assert institution is not None, "every branch belongs to an institution"
    return institution


def automatic_block(
    session: Session, patron: Patron, moment: datetime
) -> Refusal | None:
    """FEES_OVER_LIMIT or OVERDUES_OVER_LIMIT by the institution's settings, else
    None (see `ils.fees.borrowing_block`, which is this)."""
    institution = institution_of_patron(session, patron)
    fee_limit = institution.fee_limit_minor
    # A limit of 0 blocks on any fee or overdue at all; None never blocks.
    if fee_limit is not None and open_fees_minor(session, patron.id) >= max(
        fee_limit, 1
    ):
        return Refusal.FEES_OVER_LIMIT
    overdue_limit = institution.overdue_limit
    if overdue_limit is not None and overdue_loan_count(
        session, patron.id, moment
    ) >= max(overdue_limit, 1):
        return Refusal.OVERDUES_OVER_LIMIT
    return None


_LOANS_LISTED = (
    sa.select(Loan, Item.barcode, BibRecord.title)
    .join(Item, Item.id == Loan.item_id)
    .join(BibRecord, BibRecord.id == Item.record_id)
    .where(Loan.patron_id == sa.bindparam("patron_id"), Loan.returned_at.is_(None))
    .order_by(Loan.due_at, Loan.id)
)


def patron_view(
    session: Session,
    patron: Patron,
    now: datetime,
    zone: ZoneInfo,
    *,
    pin_valid: bool | None,
    branch_id: int | None = None,
    general: LoanRule | Literal[Ask.READ] | None = READ,
    blocks: Sequence[PatronBlock] | Literal[Ask.READ] = READ,
) -> PatronView:
    """The patron's account; `max_loans` is from the general rule at `branch_id`
    (the patron's home branch when None). A caller that has read the general
    rule or the patron's open blocks in this unit of work passes them."""
    category: PatronCategory = patron.category
    if blocks is READ:
        blocks = open_blocks(session, patron)
    rows = session.execute(_LOANS_LISTED, {"patron_id": patron.id}).all()
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
    if general is READ:
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
        fines_minor=open_fees_minor(session, patron.id),
        currency=currency_of(session, patron.home_branch_id),
        # An automatic block (fees or overdues over the limit) also stops
        # borrowing, though `blocked` is only for a block staff placed.
        may_borrow=not (
            expired
            or patron.card_lost
            or blocked
            or automatic_block(session, patron, now) is not None
        ),
        pin_locked=(
            patron.pin_locked_until is not None and patron.pin_locked_until > now
        ),
        credit_minor=patron.credit_minor,
    )
