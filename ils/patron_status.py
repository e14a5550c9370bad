"""A patron's standing: the lists and counts a terminal shows, and the fourteen
conditions that say what the patron may not do.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy. It never logs. It knows nothing of
SIP2's messages: the server's mapping layer turns `PatronStanding` into a
patron status (63/64) or information (64) response, its conditions into the
14-character status field and its lists into the repeated item fields.

The lists:

- charged: the patron's open loans, soonest due first;
- overdue: those of them due before the moment asked about;
- holds available: holds WAITING on the hold shelf for the patron;
- holds unavailable: holds still PENDING in a queue, or IN_TRANSIT to the
  pickup branch;
- fees: open fees (balance above nothing), oldest first;
- recalls: items on loan to this patron that another patron is waiting for,
  overdue or not. "Waiting for" means a PENDING hold of another patron on that
  very item, or on its title, that has not passed its `expires_on` date. (The
  core has no separate recall request: a hold on a title all of whose copies
  are out is what a recall is, and it is what refuses this patron's renewal.)

Every list can be asked for a page: `first` and `last` count from 1 and include
both ends (as a terminal pages through a list); either may be left out. Counts
are always of the whole list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import queries
from ils.db import Database, keep_loaded
from ils.fees import FeeView, fee_views
from ils.models import (
    Fee,
    FeeKind,
    Hold,
    HoldStatus,
    Item,
    ItemStatus,
    Loan,
    Patron,
)
from ils.pins import pin_locked
from ils.results import HoldView, LoanView, PatronView

# Open loans of items marked lost at or above which a patron has "too many
# items lost", and unpaid lost-item bills at or above which "too many items
# billed".
# TODO(#4): the institution has no setting for these yet, so one is too many.
LOST_ITEMS_LIMIT = 1
BILLED_ITEMS_LIMIT = 1

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True, kw_only=True)
class PatronConditions:
    """The fourteen patron-status conditions, each decided from the database.

    Attributes:
        charge_privileges_denied: the card may not borrow: it has expired, is
            reported lost, has a block staff placed, or is blocked automatically
            (fees or overdues at the institution's limit).
        renewal_privileges_denied: the card may not renew: the same reasons as
            for borrowing (a blocked or unusable card renews nothing).
        recall_privileges_denied: the card may not place a recall; the core's
            recall is a hold on an item out on loan, so this is exactly
            `hold_privileges_denied`.
        hold_privileges_denied: the card may not place holds: it may not borrow
            (above), or the patron's general loan rule at the home branch
            forbids holds, or the patron has the institution's `max_holds`
            open holds already.
        card_reported_lost: the patron record's `card_lost` flag.
        too_many_items_charged: open loans at or above `max_loans` of the
            patron's general loan rule at the home branch.
        too_many_items_overdue: overdue open loans at or above the
            institution's `overdue_limit` (never when it has none).
        too_many_renewals: an open loan has been renewed more times than its
            loan rule now allows (after a staff override, or a rule changed
            since).
        too_many_claims_of_items_returned: always False: the core records no
            claims that an item was returned.
        too_many_items_lost: open loans of items marked LOST, at or above
            `LOST_ITEMS_LIMIT`.
        excessive_outstanding_fines: open overdue fines (fees of kind OVERDUE)
            at or above the institution's `fee_limit_minor` (never without one).
        excessive_outstanding_fees: all open fees at or above the institution's
            `fee_limit_minor` (never without one); this is the automatic block.
        recall_overdue: an item on the recalls list is overdue.
        too_many_items_billed: unpaid fees for lost items (kind LOST) at or
            above `BILLED_ITEMS_LIMIT`.
    """

    charge_privileges_denied: bool
    renewal_privileges_denied: bool
    recall_privileges_denied: bool
    hold_privileges_denied: bool
    card_reported_lost: bool
    too_many_items_charged: bool
    too_many_items_overdue: bool
    too_many_renewals: bool
    too_many_claims_of_items_returned: bool
    too_many_items_lost: bool
    excessive_outstanding_fines: bool
    excessive_outstanding_fees: bool
    recall_overdue: bool
    too_many_items_billed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PatronStanding:
    """A patron's account, conditions, counts and (paged) lists.

    The `*_count` fields count whole lists; the tuples hold the page asked for.
    `fines_minor` is every open fee's balance; `overdue_fines_minor` only the
    overdue fines'.
    """

    patron: PatronView
    conditions: PatronConditions
    pin_locked: bool
    charged_count: int
    overdue_count: int
    holds_available_count: int
    holds_unavailable_count: int
    fees_count: int
    recalls_count: int
    charged: tuple[LoanView, ...]
    overdue: tuple[LoanView, ...]
    holds_available: tuple[HoldView, ...]
    holds_unavailable: tuple[HoldView, ...]
    fees: tuple[FeeView, ...]
    recalls: tuple[LoanView, ...]
    fines_minor: int
    overdue_fines_minor: int
    credit_minor: int
    currency: str


def page(entries: Sequence[_T], first: int | None, last: int | None) -> tuple[_T, ...]:
    """Entries `first` to `last`, counted from 1, both included; all when neither
    is given. A `last` before `first` gives nothing; a range past the end gives
    what there is."""
    start = max((first or 1) - 1, 0)
    end = len(entries) if last is None else max(last, 0)
    return tuple(entries[start:end])


def read_standing(
    database: Database,
    barcode: str,
    moment: datetime,
    *,
    first: int | None = None,
    last: int | None = None,
) -> PatronStanding | None:
    """A patron's standing at `moment` in a read unit; None for an unknown card."""
    with database.read() as session:
        keep_loaded(session)
        patron = queries.patron_by_barcode(session, barcode)
        if patron is None:
            return None
        return standing(session, patron, moment, first=first, last=last)


def standing(
    session: Session,
    patron: Patron,
    moment: datetime,
    *,
    first: int | None = None,
    last: int | None = None,
) -> PatronStanding:
    """A patron's standing at `moment`, inside the caller's unit of work."""
    zone = queries.branch_zone(patron.home_branch)
    general = queries.loan_rule(
        session,
        branch_id=patron.home_branch_id,
        category_id=patron.category_id,
        item_type_id=None,
    )
    view = queries.patron_view(
        session, patron, moment, zone, pin_valid=None, general=general
    )
    institution = queries.institution_of_patron(session, patron)

    charged = list(view.loans)
    overdue = [loan for loan in charged if loan.overdue]
    holds = _open_holds(session, patron)
    available = [hold for hold in holds if hold.available]
    unavailable = [hold for hold in holds if hold.pending]
    fees = fee_views(session, patron.id)
    recalled = _recalled_barcodes(session, patron, moment)
    recalls = [loan for loan in charged if loan.item_barcode in recalled]

    fines = view.fines_minor
    overdue_fines = sum(
        fee.balance_minor for fee in fees if fee.kind is FeeKind.OVERDUE
    )
    fee_limit = institution.fee_limit_minor
    overdue_limit = institution.overdue_limit

    may_not_borrow = not view.may_borrow
    holds_refused = (
        may_not_borrow
        or (general is not None and not general.holds_allowed)
        or (institution.max_holds is not None and len(holds) >= institution.max_holds)
    )
    conditions = PatronConditions(
        charge_privileges_denied=may_not_borrow,
        renewal_privileges_denied=may_not_borrow,
        recall_privileges_denied=holds_refused,
        hold_privileges_denied=holds_refused,
        card_reported_lost=patron.card_lost,
        too_many_items_charged=(
            view.max_loans is not None and len(charged) >= view.max_loans
        ),
        too_many_items_overdue=(
            overdue_limit is not None and len(overdue) >= max(overdue_limit, 1)
        ),
        too_many_renewals=_renewed_beyond_rule(session, patron),
        # TODO(#4): no claims-returned records exist in the core to count.
        too_many_claims_of_items_returned=False,
        too_many_items_lost=_lost_on_loan(session, patron) >= LOST_ITEMS_LIMIT,
        excessive_outstanding_fines=(
            fee_limit is not None and overdue_fines >= max(fee_limit, 1)
        ),
        excessive_outstanding_fees=(
            fee_limit is not None and fines >= max(fee_limit, 1)
        ),
        recall_overdue=any(loan.overdue for loan in recalls),
        too_many_items_billed=_unpaid_lost_bills(session, patron) >= BILLED_ITEMS_LIMIT,
    )
    return PatronStanding(
        patron=view,
        conditions=conditions,
        pin_locked=pin_locked(patron, moment),
        charged_count=len(charged),
        overdue_count=len(overdue),
        holds_available_count=len(available),
        holds_unavailable_count=len(unavailable),
        fees_count=len(fees),
        recalls_count=len(recalls),
        charged=page(charged, first, last),
        overdue=page(overdue, first, last),
        holds_available=page(available, first, last),
        holds_unavailable=page(unavailable, first, last),
        fees=page(fees, first, last),
        recalls=page(recalls, first, last),
        fines_minor=fines,
        overdue_fines_minor=overdue_fines,
        credit_minor=patron.credit_minor,
        currency=view.currency,
    )


# The standing's own look-ups, built once (see `ils.queries`), by patron id.
_OPEN_HOLDS = (
    sa.select(Hold)
    .where(
        Hold.patron_id == sa.bindparam("patron_id"),
        Hold.status.in_(queries.OPEN_HOLD_STATUSES),
    )
    .order_by(Hold.placed_at, Hold.id)
)
# Loans of the patron's that another patron's pending hold waits for.
_RECALLED = (
    sa.select(Item.barcode)
    .join(Loan, Loan.item_id == Item.id)
    .where(
        Loan.patron_id == sa.bindparam("patron_id"),
        Loan.returned_at.is_(None),
        sa.select(Hold.id)
        .where(
            Hold.status == HoldStatus.PENDING,
            Hold.patron_id != sa.bindparam("patron_id"),
            Hold.record_id == Item.record_id,
            sa.or_(Hold.item_id.is_(None), Hold.item_id == Item.id),
            sa.or_(Hold.expires_on.is_(None), Hold.expires_on >= sa.bindparam("today")),
        )
        .exists(),
    )
)
_RENEWED_LOANS = (
    sa.select(Loan.renewals, Loan.branch_id, Item.item_type_id)
    .join(Item, Item.id == Loan.item_id)
    .where(
        Loan.patron_id == sa.bindparam("patron_id"),
        Loan.returned_at.is_(None),
        Loan.renewals > 0,
    )
)
_LOST_ON_LOAN = (
    sa.select(sa.func.count())
    .select_from(Loan)
    .join(Item, Item.id == Loan.item_id)
    .where(
        Loan.patron_id == sa.bindparam("patron_id"),
        Loan.returned_at.is_(None),
        Item.status == ItemStatus.LOST,
    )
)
_UNPAID_LOST_BILLS = (
    sa.select(sa.func.count())
    .select_from(Fee)
    .where(
        Fee.patron_id == sa.bindparam("patron_id"),
        Fee.kind == FeeKind.LOST,
        Fee.balance_minor > 0,
    )
)


def _open_holds(session: Session, patron: Patron) -> list[HoldView]:
    holds = session.scalars(_OPEN_HOLDS, {"patron_id": patron.id})
    return [queries.hold_view(session, hold) for hold in holds]


def _recalled_barcodes(session: Session, patron: Patron, moment: datetime) -> set[str]:
    """Barcodes of the patron's loans that another patron's pending hold waits for."""
    today = moment.astimezone(queries.branch_zone(patron.home_branch)).date()
    return set(session.scalars(_RECALLED, {"patron_id": patron.id, "today": today}))


def _renewed_beyond_rule(session: Session, patron: Patron) -> bool:
    loans = session.execute(_RENEWED_LOANS, {"patron_id": patron.id}).all()
    for renewals, branch_id, item_type_id in loans:
        rule = queries.loan_rule(
            session,
            branch_id=branch_id,
            category_id=patron.category_id,
            item_type_id=item_type_id,
        )
        if rule is not None and renewals > rule.renewals_allowed:
            return True
    return False


def _lost_on_loan(session: Session, patron: Patron) -> int:
    return int(session.scalar(_LOST_ON_LOAN, {"patron_id": patron.id}) or 0)


def _unpaid_lost_bills(session: Session, patron: Patron) -> int:
    return int(session.scalar(_UNPAID_LOST_BILLS, {"patron_id": patron.id}) or 0)
