"""Charging fees inside the caller's transaction: a fee, a lost item's fees.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy, and never `ils.fees` or
`ils.fee_service` (they import this). It never logs. Callers find these
functions in `ils.fees` too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from ils import queries
from ils.currency import MAX_MINOR
from ils.ledger import spend_credit
from ils.models import (
    CirculationLog,
    Fee,
    FeeKind,
    Institution,
    Item,
    Loan,
    LoanEvent,
    Patron,
)

# Charging, inside the caller's transaction.


def institution_of(session: Session, patron: Patron) -> Institution:
    """The institution a patron belongs to: that of their home branch."""
    return queries.institution_of_patron(session, patron)


def charge_fee(
    session: Session,
    *,
    patron: Patron,
    kind: FeeKind,
    amount_minor: int,
    description: str,
    by: str,
    moment: datetime,
    item: Item | None = None,
    loan: Loan | None = None,
) -> Fee | None:
    """Record a fee in the institution's currency (None when amount is 0), apply any
    credit the patron has, and write the circulation log row. Called inside the
    caller's transaction.

    The caller holds the patron's row lock (it changes `credit_minor`).

    Raises:
        ValueError: a negative amount, or one too large to store.
    """
    if amount_minor < 0 or amount_minor > MAX_MINOR:
        raise ValueError(f"a fee of {amount_minor} minor units cannot be charged")
    if amount_minor == 0:
        return None
    currency = institution_of(session, patron).currency
    fee = Fee(
        patron_id=patron.id,
        kind=kind,
        amount_minor=amount_minor,
        balance_minor=amount_minor,
        currency=currency,
        description=description,
        item_id=None if item is None else item.id,
        loan_id=None if loan is None else loan.id,
        created_at=moment,
        created_by=by,
    )
    session.add(fee)
    session.flush()
    session.add(
        CirculationLog(
            at=moment,
            event=LoanEvent.FEE_CHARGED,
            item_id=fee.item_id,
            patron_id=patron.id,
            branch_id=None if loan is None else loan.branch_id,
            terminal=by,
            detail=f"fee {fee.id} {kind.value} {amount_minor} {currency}",
        )
    )
    if patron.credit_minor > 0:
        spend_credit(session, patron, [fee], moment=moment, by=by)
    session.flush()
    return fee


def charge_lost_item(
    session: Session,
    *,
    patron: Patron,
    item: Item,
    moment: datetime,
    by: str,
    loan: Loan | None = None,
) -> list[Fee]:
    """Charge a lost item: its price as a LOST fee, and the institution's processing
    fee as a PROCESSING fee. Either is skipped when it is 0 (an item with no price
    has no lost fee). Called inside the caller's transaction, patron locked."""
    institution = institution_of(session, patron)
    title = item.record.title
    charged = [
        charge_fee(
            session,
            patron=patron,
            kind=FeeKind.LOST,
            amount_minor=item.price_minor or 0,
            description=f"Lost: {title}",
            by=by,
            moment=moment,
            item=item,
            loan=loan,
        ),
        charge_fee(
            session,
            patron=patron,
            kind=FeeKind.PROCESSING,
            amount_minor=institution.lost_processing_fee_minor,
            description=f"Processing a lost item: {title}",
            by=by,
            moment=moment,
            item=item,
            loan=loan,
        ),
    ]
    return [fee for fee in charged if fee is not None]
