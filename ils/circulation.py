"""The circulation service: the facade of the core's use cases, each one database
transaction: look-ups, checkout, renewal, checkin, holds and their expiry.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and the other
`ils` modules; never SIP2, Twisted or Kivy. It never logs: it returns results
or raises `CirculationRefused`. The decisions themselves live in
`ils.checkout`, `ils.checkin`, `ils.renewals` and `ils.holds`; this module
runs them in units of work and retries what the database turned away.

Concurrency, retries and the log of refusals: see `ils.unit_of_work`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Literal, TypeVar

from sqlalchemy.orm import Session

from ils import circulation_reads as reads
from ils import holds
from ils.checkin import check_in
from ils.checkout import CheckoutRequest, check_out
from ils.circulation_batches import expire_each, renew_loans
from ils.db import Database
from ils.models import utcnow
from ils.pins import PinMemory, PinOutcome, check_pin
from ils.queries import branch_zone
from ils.renewals import renew as renew_in
from ils.results import (
    CheckinResult,
    CheckoutResult,
    CirculationRefused,
    HoldExpiry,
    HoldView,
    ItemView,
    PatronHolds,
    PatronView,
    PullSlip,
    Refusal,
    RenewAllResult,
)
from ils.storable import is_code, printable
from ils.unit_of_work import retry_pause, run_unit
from ils.units import Known, Overrides, aware, bad_code_refusal, request_time

__all__ = ["Circulation", "branch_zone", "retry_pause"]

_Result = TypeVar("_Result")


class Circulation:
    """The circulation use cases over one library database.

    Args:
        database: where the library's data lives.
        clock: the current time, timezone-aware; tests pass a fixed one.
        pause: waits the given seconds between retries of a unit of work.
    """

    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime] = utcnow,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self._database = database
        self._clock = clock
        self._pause = pause
        # PINs that matched lately, so a kiosk's PIN on every request of a
        # session costs scrypt only once (see `ils.pins`).
        self._pins = PinMemory()

    def _now(self) -> datetime:
        return aware(self._clock(), "the clock's time")

    def _refuse_bad_codes(
        self,
        terminal: str | None,
        moment: datetime,
        *,
        branch: str | None = None,
        patron: str | None = None,
        item: str | None = None,
    ) -> None:
        """Refuse a request whose branch code or barcodes hold characters no
        scanner sends (`ils.units.bad_code_refusal`) before they reach the
        database. The refusal is logged like any other.

        Raises:
            CirculationRefused: UNKNOWN_BRANCH, UNKNOWN_PATRON or UNKNOWN_ITEM.
        """
        reason = bad_code_refusal(branch=branch, patron=patron, item=item)
        if reason is None:
            return

        def work(_session: Session, _known: Known) -> None:
            assert reason is not None
            raise CirculationRefused(reason)

        self._unit(work, terminal=terminal, moment=moment)

    def _pin(
        self, barcode: str, pin: str | None, moment: datetime, terminal: str | None
    ) -> tuple[bool | None, bool]:
        """(pin_valid, pin_locked) for a PIN given at a terminal, checked before any
        write lock (scrypt is slow on purpose, and on SQLite a write unit holds
        the whole database); a PIN that matched lately is remembered (`ils.pins`)."""
        if pin is None:
            return None, False
        outcome = check_pin(
            self._database,
            barcode,
            pin,
            moment,
            terminal=terminal,
            memory=self._pins,
        )
        return outcome is PinOutcome.MATCH, outcome is PinOutcome.LOCKED

    # Look-ups.

    def patron(
        self, barcode: str, *, pin: str | None = None, terminal: str | None = None
    ) -> PatronView | None:
        """A patron's account, or None when no card has this barcode.

        If `pin` is given, `pin_valid` says whether it matches (a wrong PIN is
        counted towards the PIN lock, and a locked PIN never matches).
        """
        now = self._now()
        if not is_code(barcode):
            return None
        pin_valid, _locked = self._pin(barcode, pin, now, printable(terminal))
        return reads.patron_view(self._database, barcode, now, pin_valid)

    def pin_matches(
        self, barcode: str, pin: str, *, terminal: str | None = None
    ) -> bool:
        """Whether `pin` is the PIN of the card `barcode`, as `patron` checks it (a
        wrong PIN is counted towards the PIN lock, a locked PIN never matches, an
        unknown card matches nothing), for a caller that reads the account
        itself afterwards."""
        if not is_code(barcode):
            return False
        valid, _locked = self._pin(barcode, pin, self._now(), printable(terminal))
        return bool(valid)

    def item(self, barcode: str) -> ItemView | None:
        """An item, its loan and its holds, or None when no item has this barcode."""
        return reads.item_view(self._database, barcode)

    # Checkout and renewal.

    def checkout(
        self,
        patron_barcode: str,
        item_barcode: str,
        *,
        branch_code: str,
        pin: str | None = None,
        pin_required: bool = False,
        terminal: str | None = None,
        at: datetime | None = None,
        renew_if_on_loan: bool = True,
        checkin_if_on_loan_to_other: bool = False,
        override: frozenset[Refusal] = frozenset(),
        offline: bool = False,
        offline_policy: tuple[str, ...] = (),
        terminal_due_at: datetime | None = None,
        account: bool = True,
    ) -> CheckoutResult:
        """Lend an item to a patron, or renew it if they already have it.

        Args:
            patron_barcode: the patron's card.
            item_barcode: the item's barcode.
            branch_code: where the checkout happens; its time zone sets the due day.
            pin: the PIN the patron gave; if given it must match.
            pin_required: refuse when no PIN is given and the patron has one.
            terminal: the terminal or login, for the log.
            at: when it happened, for checkouts recorded offline; default now
                (a later time is taken as now, `ils.units.request_time`).
            renew_if_on_loan: renew an item already on loan to this patron; if
                False, such a checkout repeats the one made (a retry after a
                lost answer): nothing is changed or logged, and the loan comes
                back with `renewal=False` and its due date.
            checkin_if_on_loan_to_other: for an item still on loan to someone
                else, False refuses; True checks it in (fined as a return now)
                and lends it to this patron.
            override: refusals a member of staff waives (see
                `ils.units.OVERRIDABLE`); honoured only where the rule has
                `staff_override`, and logged.
            offline: the terminal lent the item while it could not reach the
                library system: recorded over the refusals in
                `ils.units.OFFLINE_WAIVABLE`, named in the log row (see
                `ils.checkout`); `at` is when it was lent.
            offline_policy: with `offline`, the names of the caller's own
                policy refusals it recorded over, for the log row.
            terminal_due_at: with `offline`, the due date the terminal gave the
                patron; kept when after `at` and no later than the rule's.
            account: whether the result carries the account (a refusal does).

        Raises:
            CirculationRefused: for the first reason in `ils.checkout` that
                applies; TRY_AGAIN when the database kept turning it away.
            ValueError: `override` names a refusal that can never be waived, or
                `at` or `terminal_due_at` is naive or before 1900.
        """
        now = self._now()
        moment = request_time(at, "at", now)
        terminal = printable(terminal)
        overrides = Overrides(
            asked=frozenset(override),
            offline=offline,
            offline_policy=tuple(printable(name) or "" for name in offline_policy),
        )
        told = None
        if offline and terminal_due_at is not None:
            told = aware(terminal_due_at, "terminal_due_at")
            if told <= now:
                # A due date already past would make the loan overdue (and
                # fined) from the start: the rule's due date is used instead.
                told = None
        self._refuse_bad_codes(
            terminal,
            moment,
            branch=branch_code,
            patron=patron_barcode,
            item=item_barcode,
        )
        pin_valid, pin_locked = self._pin(patron_barcode, pin, moment, terminal)
        request = CheckoutRequest(
            patron_barcode=patron_barcode,
            item_barcode=item_barcode,
            branch_code=branch_code,
            pin_valid=pin_valid,
            pin_locked=pin_locked,
            pin_required=pin_required,
            terminal=terminal,
            moment=moment,
            renew_if_on_loan=renew_if_on_loan,
            checkin_if_on_loan_to_other=checkin_if_on_loan_to_other,
            due_at=told,
            account=account,
        )

        def work(session: Session, known: Known) -> CheckoutResult:
            overrides.clear()
            return check_out(session, known, request, overrides)

        return self._unit(work, terminal=terminal, moment=moment)

    def renew(
        self,
        patron_barcode: str,
        item_barcode: str,
        *,
        branch_code: str | None = None,
        pin: str | None = None,
        terminal: str | None = None,
        at: datetime | None = None,
        override: frozenset[Refusal] = frozenset(),
        account: bool = True,
    ) -> CheckoutResult:
        """Renew one of a patron's loans, due again from now.

        Args:
            branch_code: the branch whose rule applies; default the branch
                that made the loan.
            override, account: as for `checkout`.

        Raises:
            CirculationRefused: see `ils.renewals.renew`.
        """
        moment = request_time(at, "at", self._now())
        terminal = printable(terminal)
        overrides = Overrides(asked=frozenset(override))
        self._refuse_bad_codes(
            terminal,
            moment,
            branch=branch_code,
            patron=patron_barcode,
            item=item_barcode,
        )
        pin_valid, pin_locked = self._pin(patron_barcode, pin, moment, terminal)

        def work(session: Session, known: Known) -> CheckoutResult:
            overrides.used.clear()
            return renew_in(
                session,
                known,
                patron_barcode=patron_barcode,
                item_barcode=item_barcode,
                branch_code=branch_code,
                pin_valid=pin_valid,
                pin_locked=pin_locked,
                moment=moment,
                terminal=terminal,
                overrides=overrides,
                account=account,
            )

        return self._unit(work, terminal=terminal, moment=moment)

    def renew_all(
        self,
        patron_barcode: str,
        *,
        branch_code: str | None = None,
        pin: str | None = None,
        terminal: str | None = None,
        at: datetime | None = None,
    ) -> RenewAllResult:
        """Renew every loan of a patron, each on its own, and report each one.

        A card that may not borrow has every loan refused for its reason.

        Raises:
            CirculationRefused: UNKNOWN_PATRON, or UNKNOWN_BRANCH.
        """
        moment = request_time(at, "at", self._now())
        terminal = printable(terminal)
        self._refuse_bad_codes(
            terminal, moment, branch=branch_code, patron=patron_barcode
        )
        pin_valid, pin_locked = self._pin(patron_barcode, pin, moment, terminal)
        loans = reads.open_loans(self._database, patron_barcode)

        outcomes = renew_loans(
            lambda work: self._unit(work, terminal=terminal, moment=moment),
            loans,
            patron_barcode=patron_barcode,
            branch_code=branch_code,
            pin_valid=pin_valid,
            pin_locked=pin_locked,
            moment=moment,
            terminal=terminal,
        )

        view = reads.patron_view(self._database, patron_barcode, moment, pin_valid)
        if view is None:
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        return RenewAllResult(patron=view, outcomes=tuple(outcomes))

    # Checkin.

    def checkin(
        self,
        item_barcode: str,
        *,
        branch_code: str,
        terminal: str | None = None,
        returned_at: datetime | None = None,
    ) -> CheckinResult:
        """Take an item back at a branch, whether or not it was on loan, and say
        where it goes next (see `ils.checkin`).

        Args:
            item_barcode: the item's barcode.
            branch_code: where it was returned; the item is now there.
            terminal: the terminal or login, for the log.
            returned_at: when it was returned, for returns recorded offline;
                default now. The loan ends and is fined at that time (a time
                before the checkout is taken as the checkout time, and one
                later than now as now); holds are trapped now.

        Raises:
            CirculationRefused: UNKNOWN_BRANCH or UNKNOWN_ITEM (also for codes
                with control characters); TRY_AGAIN when the database kept
                turning it away.
            ValueError: `returned_at` is naive or before 1900.
        """
        now = self._now()
        moment = request_time(returned_at, "returned_at", now)
        terminal = printable(terminal)
        self._refuse_bad_codes(terminal, now, branch=branch_code, item=item_barcode)

        def work(session: Session, known: Known) -> CheckinResult:
            return check_in(
                session,
                known,
                item_barcode=item_barcode,
                branch_code=branch_code,
                terminal=terminal,
                returned_at=moment,
                now=now,
            )

        return self._unit(work, terminal=terminal, moment=now)

    # Holds.

    def place_hold(
        self,
        patron_barcode: str,
        *,
        pickup_branch_code: str,
        item_barcode: str | None = None,
        record_id: int | None = None,
        item_level: bool = False,
        expires_on: date | None = None,
        pin: str | None = None,
        terminal: str | None = None,
        at: datetime | None = None,
    ) -> HoldView:
        """Place a hold on a title (named by one of its items' barcodes, or by
        `record_id`) or, with `item_level`, on the one item `item_barcode`.

        Raises:
            CirculationRefused: see `ils.holds.place`.
            ValueError: neither an item nor a record is named, or an item-level
                hold names no item.
        """
        moment = request_time(at, "at", self._now())
        if item_barcode is None and record_id is None:
            raise ValueError("name the title by an item barcode or a record id")
        terminal = printable(terminal)
        self._refuse_bad_codes(
            terminal,
            moment,
            branch=pickup_branch_code,
            patron=patron_barcode,
            item=item_barcode,
        )
        pin_valid, pin_locked = self._pin(patron_barcode, pin, moment, terminal)
        request = holds.HoldRequest(
            patron_barcode=patron_barcode,
            pickup_branch_code=pickup_branch_code,
            item_barcode=item_barcode,
            record_id=record_id,
            item_level=item_level,
            expires_on=expires_on,
        )

        def work(session: Session, known: Known) -> HoldView:
            return holds.place(
                session,
                known,
                request,
                pin_valid=pin_valid,
                pin_locked=pin_locked,
                moment=moment,
                terminal=terminal,
            )

        return self._unit(work, terminal=terminal, moment=moment)

    def cancel_hold(
        self,
        patron_barcode: str,
        hold_id: int,
        *,
        terminal: str | None = None,
        at: datetime | None = None,
    ) -> HoldView:
        """Cancel one of a patron's open holds; an item waiting for it passes on
        to the next hold picked up at the same branch (see `ils.holds`).

        Raises:
            CirculationRefused: UNKNOWN_PATRON or HOLD_NOT_FOUND.
        """
        moment = request_time(at, "at", self._now())
        terminal = printable(terminal)
        self._refuse_bad_codes(terminal, moment, patron=patron_barcode)

        def work(session: Session, known: Known) -> HoldView:
            return holds.cancel(
                session,
                known,
                patron_barcode=patron_barcode,
                hold_id=hold_id,
                moment=moment,
                terminal=terminal,
            )

        return self._unit(work, terminal=terminal, moment=moment)

    def change_hold_pickup(
        self,
        patron_barcode: str,
        hold_id: int,
        *,
        pickup_branch_code: str,
        terminal: str | None = None,
        at: datetime | None = None,
    ) -> HoldView:
        """Move one of a patron's open holds to another pickup branch.

        Raises:
            CirculationRefused: UNKNOWN_BRANCH, UNKNOWN_PATRON, HOLD_NOT_FOUND or
                PICKUP_BRANCH_NOT_ALLOWED.
        """
        return self.change_hold(
            patron_barcode,
            hold_id,
            pickup_branch_code=pickup_branch_code,
            terminal=terminal,
            at=at,
        )

    def change_hold(
        self,
        patron_barcode: str,
        hold_id: int,
        *,
        pickup_branch_code: str | None = None,
        expires_on: date | Literal[holds.Keep.KEEP] | None = holds.KEEP,
        terminal: str | None = None,
        at: datetime | None = None,
    ) -> HoldView:
        """Change one of a patron's open holds, in one transaction: its pickup
        branch, its expiry date (the last day the patron wants it, in the pickup
        branch's time zone; None for none), or both. What is not given is kept.

        Raises:
            CirculationRefused: see `ils.holds.change`; nothing is changed.
        """
        moment = request_time(at, "at", self._now())
        terminal = printable(terminal)
        self._refuse_bad_codes(
            terminal, moment, branch=pickup_branch_code, patron=patron_barcode
        )

        def work(session: Session, known: Known) -> HoldView:
            return holds.change(
                session,
                known,
                patron_barcode=patron_barcode,
                hold_id=hold_id,
                pickup_branch_code=pickup_branch_code,
                expires_on=expires_on,
                moment=moment,
                terminal=terminal,
            )

        return self._unit(work, terminal=terminal, moment=moment)

    def holds_of(self, patron_barcode: str) -> PatronHolds:
        """A patron's open holds: those waiting for pickup apart from those still
        in the queue or in transit.

        Raises:
            CirculationRefused: UNKNOWN_PATRON.
        """
        return reads.holds_of(self._database, patron_barcode)

    def hold_queue(
        self, *, record_id: int | None = None, item_barcode: str | None = None
    ) -> tuple[HoldView, ...]:
        """A title's open holds, trapped ones first and then the queue in order;
        with `item_barcode`, those that item could fill or is trapped for.

        Raises:
            CirculationRefused: UNKNOWN_ITEM for a barcode or record nobody has.
            ValueError: neither is named.
        """
        return reads.hold_queue(self._database, record_id, item_barcode)

    def pull_list(self, branch_code: str | None = None) -> tuple[PullSlip, ...]:
        """The pending holds a copy on an open shelf can fill now, each with the
        copy to pull (at `branch_code`'s shelves when named; `ils.pull_list`).

        Raises:
            CirculationRefused: UNKNOWN_BRANCH for a branch nobody has.
        """
        return reads.pull_slips(self._database, self._now(), branch_code)

    def expire_holds(
        self, now: datetime | None = None, *, terminal: str | None = None
    ) -> HoldExpiry:
        """Expire every hold whose pickup deadline or expiry date has passed by
        `now` (default the clock's time), each in its own transaction; an item
        waiting for one passes to the next hold picked up at its branch."""
        moment = self._now() if now is None else aware(now, "now")
        with self._database.read() as session:
            candidates = holds.expiry_candidates(session, moment)
        return expire_each(
            lambda work: self._unit(work, terminal=terminal, moment=moment),
            candidates,
            moment,
            terminal,
        )

    # The unit of work.

    def _unit(
        self,
        work: Callable[[Session, Known], _Result],
        *,
        terminal: str | None,
        moment: datetime,
    ) -> _Result:
        """Run one use case in its own transaction (see `ils.unit_of_work`)."""
        return run_unit(
            self._database, self._pause, work, terminal=terminal, moment=moment
        )
