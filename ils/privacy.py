"""Patron privacy: loan history anonymised after a retention period, and a patron's
requests to see (export) or remove (erase) what the library holds about them.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy. It never logs; the erase writes one
PATRON_ERASED row to the circulation log, without the patron's barcode or name.

What is kept and what goes is written for librarians in docs/privacy.md:

- `anonymise` runs the institution's `loan_history_days`: returned loans, log
  rows and finished holds older than that lose their link to the patron. The
  item, branch, dates and (for loans) the patron's category stay for
  statistics. An institution whose setting is None keeps its history.
- `export` gathers everything held about one patron, as plain JSON-ready data,
  in one consistent snapshot (REPEATABLE READ on PostgreSQL; a SQLite read
  transaction is a snapshot already). The PIN hash is never included.
- `erase` refuses while the patron has loans out (LOANS_OPEN), or owes fees or
  holds credit (FEES_OPEN: money is settled first, so none vanishes).
  Otherwise, in one transaction, it cancels open holds, unlinks every loan,
  hold, fee, payment and log row from the patron, deletes the patron's blocks
  and then the patron row itself. History stays for statistics and accounts,
  anonymous.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ils import queries
from ils.db import Database
from ils.models import (
    BibRecord,
    Branch,
    CirculationLog,
    Fee,
    Hold,
    HoldStatus,
    Institution,
    Item,
    Loan,
    LoanEvent,
    Patron,
    PatronBlock,
    Payment,
    PaymentAllocation,
)
from ils.results import CirculationRefused, Refusal

FINISHED_HOLD_STATUSES = (
    HoldStatus.FULFILLED,
    HoldStatus.CANCELLED,
    HoldStatus.EXPIRED,
)

# JSON-ready data: what `export` returns.
Json = dict[str, Any]


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(UTC)


# Anonymising history.


@dataclass(frozen=True, slots=True, kw_only=True)
class AnonymiseCount:
    """What anonymising changed (or, in a dry run, would change) for one
    institution."""

    institution_code: str
    history_days: int
    cutoff: datetime
    loans: int
    log_rows: int
    holds: int


def anonymise(
    database: Database, moment: datetime, *, dry_run: bool = False
) -> list[AnonymiseCount]:
    """Drop the patron link from history older than each institution's
    `loan_history_days`, in one transaction; counts per institution.

    Returned loans whose return is before the cutoff, log rows written before
    it and finished holds that finished before it are unlinked. A loan keeps
    the patron's category (filled in first where it was missing). With
    `dry_run`, nothing is changed and the counts say what would be.
    """
    moment = _aware(moment)
    counts: list[AnonymiseCount] = []
    with database.transaction() as session:
        institutions = session.scalars(
            sa.select(Institution)
            .where(Institution.loan_history_days.is_not(None))
            .order_by(Institution.code)
        ).all()
        for institution in institutions:
            days = institution.loan_history_days
            assert days is not None
            cutoff = moment - timedelta(days=days)
            counts.append(
                _anonymise_institution(session, institution, cutoff, days, dry_run)
            )
        if dry_run:
            session.rollback()
    return counts


def _anonymise_institution(
    session: Session,
    institution: Institution,
    cutoff: datetime,
    days: int,
    dry_run: bool,
) -> AnonymiseCount:
    patrons = (
        sa.select(Patron.id)
        .join(Branch, Branch.id == Patron.home_branch_id)
        .where(Branch.institution_id == institution.id)
    )
    old_loans = sa.and_(
        Loan.patron_id.in_(patrons),
        Loan.returned_at.is_not(None),
        Loan.returned_at < cutoff,
    )
    old_rows = sa.and_(
        CirculationLog.patron_id.in_(patrons), CirculationLog.at < cutoff
    )
    old_holds = sa.and_(
        Hold.patron_id.in_(patrons),
        Hold.status.in_(FINISHED_HOLD_STATUSES),
        Hold.finished_at.is_not(None),
        Hold.finished_at < cutoff,
    )

    def count(model: type[Loan | CirculationLog | Hold], where: Any) -> int:
        found = session.scalar(
            sa.select(sa.func.count()).select_from(model).where(where)
        )
        return int(found or 0)

    result = AnonymiseCount(
        institution_code=institution.code,
        history_days=days,
        cutoff=cutoff,
        loans=count(Loan, old_loans),
        log_rows=count(CirculationLog, old_rows),
        holds=count(Hold, old_holds),
    )
    if dry_run:
        return result

    category = (
        sa.select(Patron.category_id)
        .where(Patron.id == Loan.patron_id)
        .scalar_subquery()
    )
    session.execute(
        sa.update(Loan)
        .where(old_loans, Loan.patron_category_id.is_(None))
        .values(patron_category_id=category)
        .execution_options(synchronize_session=False)
    )
    for model, where in (
        (Loan, old_loans),
        (CirculationLog, old_rows),
        (Hold, old_holds),
    ):
        session.execute(
            sa.update(model)
            .where(where)
            .values(patron_id=None)
            .execution_options(synchronize_session=False)
        )
    return result


# Export.


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def export_patron(database: Database, barcode: str) -> Json:
    """Everything held about one patron, as JSON-ready data, from one snapshot.

    Raises:
        CirculationRefused: UNKNOWN_PATRON.
    """
    with database.read() as session:
        if not database.is_sqlite:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        patron = queries.patron_by_barcode(session, barcode)
        if patron is None:
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        return patron_data(session, patron, datetime.now(UTC))


def patron_data(session: Session, patron: Patron, moment: datetime) -> Json:
    """Everything held about `patron`, read inside the caller's unit of work."""
    currency = queries.currency_of(session, patron.home_branch_id)
    items = _item_barcodes(session, patron)
    branches = dict(session.execute(sa.select(Branch.id, Branch.code)).all())
    return {
        "exported_at": _iso(moment),
        "patron": {
            "barcode": patron.barcode,
            "surname": patron.surname,
            "firstname": patron.firstname,
            "category": patron.category.code,
            "home_branch": patron.home_branch.code,
            "expires_on": None
            if patron.expires_on is None
            else patron.expires_on.isoformat(),
            "email": patron.email,
            "phone": patron.phone,
            "card_lost": patron.card_lost,
            "created_at": _iso(patron.created_at),
            "has_pin": patron.pin_hash is not None,
            "pin_failures": patron.pin_failures,
            "pin_locked_until": _iso(patron.pin_locked_until),
            "credit_minor": patron.credit_minor,
            "currency": currency,
        },
        "blocks": [
            {
                "note": block.note,
                "placed_by": block.placed_by,
                "placed_at": _iso(block.placed_at),
                "lifted_at": _iso(block.lifted_at),
            }
            for block in session.scalars(
                sa.select(PatronBlock)
                .where(PatronBlock.patron_id == patron.id)
                .order_by(PatronBlock.id)
            )
        ],
        "loans": [
            {
                "item": items.get(loan.item_id),
                "title": title,
                "branch": branches.get(loan.branch_id),
                "checked_out_at": _iso(loan.checked_out_at),
                "due_at": _iso(loan.due_at),
                "returned_at": _iso(loan.returned_at),
                "renewals": loan.renewals,
            }
            for loan, title in session.execute(
                sa.select(Loan, BibRecord.title)
                .join(Item, Item.id == Loan.item_id)
                .join(BibRecord, BibRecord.id == Item.record_id)
                .where(Loan.patron_id == patron.id)
                .order_by(Loan.checked_out_at, Loan.id)
            )
        ],
        "holds": [
            {
                "title": title,
                "item": None if hold.item_id is None else items.get(hold.item_id),
                "pickup_branch": branches.get(hold.pickup_branch_id),
                "status": hold.status.value,
                "placed_at": _iso(hold.placed_at),
                "expires_on": None
                if hold.expires_on is None
                else hold.expires_on.isoformat(),
                "trapped_item": None
                if hold.trapped_item_id is None
                else items.get(hold.trapped_item_id),
                "pickup_deadline": _iso(hold.pickup_deadline),
                "finished_at": _iso(hold.finished_at),
            }
            for hold, title in session.execute(
                sa.select(Hold, BibRecord.title)
                .join(BibRecord, BibRecord.id == Hold.record_id)
                .where(Hold.patron_id == patron.id)
                .order_by(Hold.placed_at, Hold.id)
            )
        ],
        "fees": [
            {
                "id": fee.id,
                "kind": fee.kind.value,
                "amount_minor": fee.amount_minor,
                "balance_minor": fee.balance_minor,
                "currency": fee.currency,
                "description": fee.description,
                "item": None if fee.item_id is None else items.get(fee.item_id),
                "created_at": _iso(fee.created_at),
                "created_by": fee.created_by,
            }
            for fee in session.scalars(
                sa.select(Fee).where(Fee.patron_id == patron.id).order_by(Fee.id)
            )
        ],
        "payments": [
            {
                "id": payment.id,
                "amount_minor": payment.amount_minor,
                "currency": payment.currency,
                "method": payment.method.value,
                "terminal": payment.terminal,
                "transaction_id": payment.transaction_id,
                "at": _iso(payment.at),
                "note": payment.note,
                "allocations": [
                    {"fee_id": part.fee_id, "amount_minor": part.amount_minor}
                    for part in session.scalars(
                        sa.select(PaymentAllocation)
                        .where(PaymentAllocation.payment_id == payment.id)
                        .order_by(PaymentAllocation.id)
                    )
                ],
            }
            for payment in session.scalars(
                sa.select(Payment)
                .where(Payment.patron_id == patron.id)
                .order_by(Payment.id)
            )
        ],
        "circulation_log": [
            {
                "at": _iso(row.at),
                "event": row.event.value,
                "item": None if row.item_id is None else items.get(row.item_id),
                "branch": None
                if row.branch_id is None
                else branches.get(row.branch_id),
                "terminal": row.terminal,
                "detail": row.detail,
            }
            for row in session.scalars(
                sa.select(CirculationLog)
                .where(CirculationLog.patron_id == patron.id)
                .order_by(CirculationLog.at, CirculationLog.id)
            )
        ],
    }


def _item_barcodes(session: Session, patron: Patron) -> dict[int, str]:
    """Barcodes of every item the patron's rows name."""
    ids: sa.CompoundSelect[tuple[int | None]] = sa.union(
        sa.select(Loan.item_id).where(Loan.patron_id == patron.id),
        sa.select(Hold.item_id).where(Hold.patron_id == patron.id),
        sa.select(Hold.trapped_item_id).where(Hold.patron_id == patron.id),
        sa.select(Fee.item_id).where(Fee.patron_id == patron.id),
        sa.select(CirculationLog.item_id).where(CirculationLog.patron_id == patron.id),
    )
    rows = session.execute(
        sa.select(Item.id, Item.barcode).where(Item.id.in_(sa.select(ids.subquery())))
    )
    return dict(rows.all())


# Erase.


@dataclass(frozen=True, slots=True, kw_only=True)
class Erasure:
    """What an erase did: the rows unlinked or removed, and the export taken in
    the same transaction just before."""

    loans: int
    holds: int
    holds_cancelled: int
    fees: int
    payments: int
    log_rows: int
    blocks: int
    export: Json


def _erase_refusal(session: Session, patron: Patron) -> CirculationRefused | None:
    if queries.count_open_loans(session, patron) > 0:
        return CirculationRefused(Refusal.LOANS_OPEN)
    if queries.open_fees_minor(session, patron.id) > 0:
        return CirculationRefused(Refusal.FEES_OPEN)
    # Credit is the patron's money: pay it back first (refund_credit).
    if patron.credit_minor > 0:
        return CirculationRefused(
            Refusal.FEES_OPEN,
            "This card still holds credit; pay it back before erasing.",
        )
    return None


def check_erasable(database: Database, barcode: str) -> None:
    """Refuse now, before anyone is asked to confirm, an erasure that
    `erase_patron` would refuse; `erase_patron` checks again in its transaction.

    Raises:
        CirculationRefused: UNKNOWN_PATRON, LOANS_OPEN or FEES_OPEN.
    """
    with database.read() as session:
        patron = queries.patron_by_barcode(session, barcode)
        if patron is None:
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        refusal = _erase_refusal(session, patron)
        if refusal is not None:
            raise refusal


def erase_patron(
    database: Database,
    barcode: str,
    moment: datetime,
    *,
    by: str,
    keep_export: Callable[[Json], None] | None = None,
) -> Erasure:
    """Remove a patron's personal data at their request, in one transaction.

    `keep_export`, when given, is handed the patron's data just before the
    transaction commits (to write it to a file, say); if it raises, nothing is
    erased.

    Raises:
        CirculationRefused: UNKNOWN_PATRON; LOANS_OPEN while any loan is out;
            FEES_OPEN while any fee is unpaid or the patron holds credit.
    """
    moment = _aware(moment)
    with database.transaction() as session:
        patron = queries.patron_by_barcode(session, barcode, lock=True)
        if patron is None:
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        refusal = _erase_refusal(session, patron)
        if refusal is not None:
            raise refusal

        export = patron_data(session, patron, moment)
        cancelled = _cancel_open_holds(session, patron, moment)
        unlinked = {
            model: _rowcount(
                session.execute(
                    sa.update(model)
                    .where(model.patron_id == patron.id)
                    .values(patron_id=None)
                    .execution_options(synchronize_session=False)
                )
            )
            for model in (Loan, Hold, Fee, Payment, CirculationLog)
        }
        blocks = _rowcount(
            session.execute(
                sa.delete(PatronBlock)
                .where(PatronBlock.patron_id == patron.id)
                .execution_options(synchronize_session=False)
            )
        )
        session.execute(sa.delete(Patron).where(Patron.id == patron.id))
        session.add(
            CirculationLog(
                at=moment,
                event=LoanEvent.PATRON_ERASED,
                terminal=by,
                detail="patron record erased at the patron's request",
            )
        )
        if keep_export is not None:
            session.flush()
            keep_export(export)
    return Erasure(
        loans=unlinked[Loan],
        holds=unlinked[Hold],
        holds_cancelled=cancelled,
        fees=unlinked[Fee],
        payments=unlinked[Payment],
        log_rows=unlinked[CirculationLog],
        blocks=blocks,
        export=export,
    )


def _rowcount(result: object) -> int:
    # An UPDATE or DELETE answers with a cursor result, which counts its rows.
    return cast(CursorResult[Any], result).rowcount


def _cancel_open_holds(session: Session, patron: Patron, moment: datetime) -> int:
    """Cancel the patron's open holds. A trapped item is released: its next
    checkin passes it to the next hold or sends it home, as for any cancelled
    trapped hold."""
    holds: Sequence[Hold] = session.scalars(
        sa.select(Hold)
        .where(
            Hold.patron_id == patron.id,
            Hold.status.in_(queries.OPEN_HOLD_STATUSES),
        )
        .with_for_update(key_share=True)
    ).all()
    for hold in holds:
        hold.status = HoldStatus.CANCELLED
        hold.finished_at = moment
    session.flush()
    return len(holds)
