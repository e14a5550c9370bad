"""Renewals: the checks a renewal must pass, the renewal itself, and `renew` of
one item as a use case.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy. It never logs; it runs inside a unit
of work of `ils.circulation.Circulation`.

A renewal is refused, in this order, when the card may not borrow (PIN, lost,
expired, blocked by staff or automatically by fees or overdues), when the loan
has used its renewals (RENEWAL_LIMIT_REACHED), when another patron is waiting
for the item (ITEM_ON_HOLD_FOR_OTHER_PATRON: a pending hold on the title that
this item could fill, first in the queue), and when the new due date, counted
from now by the rule at the renewing branch, would not be later than the
current one (DUE_DATE_NOT_LATER). A renewal made by checking out the item again
(SIP2's checkout with renewal policy Y) whose new due date would not be later
is no renewal at all: the loan is confirmed as it stands, with its due date,
and neither a renewal is counted nor a renewal logged (a patron scanning a book
twice must not use up a renewal for nothing). An overdue loan renewed is fined
up to the renewal, as if returned then, since the new loan period starts from
now.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ils import holds, queries
from ils.calendar import BranchCalendar
from ils.checkin import charge_overdue
from ils.item_lookup import current_item_view
from ils.models import Branch, Item, Loan, LoanEvent, LoanRule, Patron
from ils.results import CheckoutResult, CirculationRefused, Refusal, renewal_message
from ils.rules.matrix import due_at as rule_due_at
from ils.units import Known, Overrides, card_refusal, log_row


def renewal_refusal(
    session: Session,
    *,
    patron: Patron,
    item: Item,
    loan: Loan,
    rule: LoanRule,
    calendar: BranchCalendar,
    moment: datetime,
    overrides: Overrides,
    require_later: bool,
) -> tuple[Refusal | None, datetime]:
    """Why this loan may not be renewed now (or None), and the new due time.

    Without `require_later` (a repeated checkout), a new due time that would not
    be later gives (None, the loan's own due time) before any other check: the
    caller confirms the loan and changes nothing.
    """
    new_due = rule_due_at(rule, moment, calendar)
    if not require_later and new_due <= loan.due_at:
        return None, loan.due_at
    if loan.renewals >= rule.renewals_allowed and not overrides.waive(
        Refusal.RENEWAL_LIMIT_REACHED, rule
    ):
        return Refusal.RENEWAL_LIMIT_REACHED, loan.due_at
    today = moment.astimezone(calendar.zone).date()
    if holds.hold_for_other(session, patron, item, today) and not overrides.waive(
        Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON, rule
    ):
        return Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON, loan.due_at
    if new_due <= loan.due_at:
        return Refusal.DUE_DATE_NOT_LATER, loan.due_at
    return None, new_due


def apply_renewal(
    session: Session,
    *,
    patron: Patron,
    item: Item,
    loan: Loan,
    branch: Branch,
    new_due: datetime,
    moment: datetime,
    terminal: str | None,
    overrides: Overrides,
) -> None:
    """Renew the loan to `new_due`, fining it first if it is overdue."""
    charge_overdue(
        session, patron=patron, loan=loan, item=item, at=moment, terminal=terminal
    )
    loan.renewals += 1
    loan.due_at = new_due
    session.add(
        log_row(
            at=moment,
            event=LoanEvent.RENEWAL,
            terminal=terminal,
            item_id=item.id,
            patron_id=patron.id,
            branch_id=branch.id,
            detail=f"due {new_due.isoformat()}{overrides.note()}",
        )
    )
    session.flush()


def renew(
    session: Session,
    known: Known,
    *,
    patron_barcode: str,
    item_barcode: str,
    branch_code: str | None,
    pin_valid: bool | None,
    pin_locked: bool,
    moment: datetime,
    terminal: str | None,
    overrides: Overrides,
    account: bool = True,
) -> CheckoutResult:
    """Renew one of the patron's loans (see the module's docstring).

    The rule is the one at `branch_code`, or at the branch that made the loan
    when None.

    Raises:
        CirculationRefused: UNKNOWN_BRANCH, UNKNOWN_PATRON, a card refusal,
            UNKNOWN_ITEM, ITEM_NOT_ON_LOAN (not on loan to this patron),
            NO_LOAN_RULE, or a renewal refusal.
    """
    branch: Branch | None = None
    if branch_code is not None:
        branch = queries.branch_by_code(session, branch_code)
        if branch is None:
            raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
        known.branch_id = branch.id

    patron = queries.patron_by_barcode(session, patron_barcode, lock=True)
    if patron is None:
        raise CirculationRefused(Refusal.UNKNOWN_PATRON)
    known.patron_id = patron.id
    item = queries.item_by_barcode(session, item_barcode, lock=True)
    loan = None if item is None else queries.open_loan(session, item, lock=True)
    if branch is None:
        branch = patron.home_branch if loan is None else loan.branch
        known.branch_id = branch.id
    zone = queries.branch_zone(branch)

    def refuse(reason: Refusal) -> CirculationRefused:
        return CirculationRefused(
            reason,
            renewal_message(reason),
            patron=queries.patron_view(
                session, patron, moment, zone, pin_valid=pin_valid, branch_id=branch.id
            ),
            item=None if item is None else queries.item_view(session, item),
        )

    card = card_refusal(
        session, patron, moment, zone, pin_valid=pin_valid, pin_locked=pin_locked
    )
    if card is not None and card not in overrides.asked:
        raise refuse(card)
    if item is None:
        raise refuse(Refusal.UNKNOWN_ITEM)
    known.item_id = item.id
    if loan is None or loan.patron_id != patron.id:
        raise refuse(Refusal.ITEM_NOT_ON_LOAN)

    rule = queries.loan_rule_choice(
        session,
        branch_id=branch.id,
        category_id=patron.category_id,
        item_type_id=item.item_type_id,
    ).rule
    if card is not None and not overrides.waive(card, rule):
        raise refuse(card)
    if rule is None:
        raise refuse(Refusal.NO_LOAN_RULE)
    calendar = queries.branch_calendar(session, branch, zone)
    refusal, new_due = renewal_refusal(
        session,
        patron=patron,
        item=item,
        loan=loan,
        rule=rule,
        calendar=calendar,
        moment=moment,
        overrides=overrides,
        require_later=True,
    )
    if refusal is not None:
        raise refuse(refusal)

    apply_renewal(
        session,
        patron=patron,
        item=item,
        loan=loan,
        branch=branch,
        new_due=new_due,
        moment=moment,
        terminal=terminal,
        overrides=overrides,
    )
    return CheckoutResult(
        item=current_item_view(session, item),
        patron=(
            queries.patron_view(
                session, patron, moment, zone, pin_valid=pin_valid, branch_id=branch.id
            )
            if account
            else None
        ),
        due_at=new_due,
        renewal=True,
    )
