"""The batch use cases behind `ils.circulation.Circulation`: renewing every
loan of a patron and expiring every overdue hold, each loan or hold in its own
unit of work, run by the `run` the facade passes in.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy, and never `ils.circulation` (which
imports this module).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ils import holds
from ils.renewals import renew as renew_in
from ils.results import (
    CheckoutResult,
    CirculationRefused,
    HoldExpiry,
    HoldView,
    Refusal,
    RenewOutcome,
)
from ils.units import Known, Overrides

__all__ = ["expire_each", "renew_loans"]

# Runs one use case in its own unit of work (`Circulation._unit`).
Run = Callable[[Callable[[Session, Known], Any]], Any]


def renew_loans(
    run: Run,
    loans: Sequence[tuple[str, str, datetime]],
    *,
    patron_barcode: str,
    branch_code: str | None,
    pin_valid: bool | None,
    pin_locked: bool,
    moment: datetime,
    terminal: str | None,
) -> list[RenewOutcome]:
    """Renew each of `loans` (item barcode, title, due time) on its own, and say
    how each went; an unknown patron or branch refuses the lot.

    Raises:
        CirculationRefused: UNKNOWN_PATRON or UNKNOWN_BRANCH.
    """
    outcomes: list[RenewOutcome] = []
    for barcode, title, due_at in loans:
        overrides = Overrides(asked=frozenset())

        def work(
            session: Session,
            known: Known,
            barcode: str = barcode,
            overrides: Overrides = overrides,
        ) -> CheckoutResult:
            return renew_in(
                session,
                known,
                patron_barcode=patron_barcode,
                item_barcode=barcode,
                branch_code=branch_code,
                pin_valid=pin_valid,
                pin_locked=pin_locked,
                moment=moment,
                terminal=terminal,
                overrides=overrides,
            )

        try:
            result = run(work)
        except CirculationRefused as refusal:
            if refusal.reason in (Refusal.UNKNOWN_PATRON, Refusal.UNKNOWN_BRANCH):
                raise
            outcomes.append(
                RenewOutcome(
                    item_barcode=barcode,
                    title=title,
                    renewed=False,
                    due_at=due_at,
                    refusal=refusal.reason,
                    message=refusal.message,
                )
            )
        else:
            outcomes.append(
                RenewOutcome(
                    item_barcode=barcode,
                    title=title,
                    renewed=True,
                    due_at=result.due_at,
                )
            )
    return outcomes


def expire_each(
    run: Run,
    candidates: Sequence[int],
    moment: datetime,
    terminal: str | None,
) -> HoldExpiry:
    """Expire each hold of `candidates` in its own unit of work, if it is still
    due to expire at `moment`."""
    expired: list[HoldView] = []
    trapped: list[HoldView] = []
    for hold_id in candidates:

        def work(
            session: Session, _known: Known, hold_id: int = hold_id
        ) -> tuple[HoldView, HoldView | None] | None:
            return holds.expire(session, hold_id, moment, terminal)

        outcome = run(work)
        if outcome is not None:
            expired.append(outcome[0])
            if outcome[1] is not None:
                trapped.append(outcome[1])
    return HoldExpiry(expired=tuple(expired), trapped=tuple(trapped))
