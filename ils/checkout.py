"""Checkout: every decision on lending an item, each refusal with its own reason.

Layer: `ils`, the bottom. Imports SQLAlchemy, the standard library and other
`ils` modules; never SIP2, Twisted or Kivy. It never logs; it runs inside a unit
of work of `ils.circulation.Circulation`.

The checks, in order (the first that applies refuses):

1. the branch (UNKNOWN_BRANCH) and the patron (UNKNOWN_PATRON), locked first;
2. the card: PIN_LOCKED, WRONG_PIN, PIN_REQUIRED, CARD_LOST, CARD_EXPIRED,
   PATRON_BLOCKED, then the automatic blocks FEES_OVER_LIMIT and
   OVERDUES_OVER_LIMIT;
3. the item, locked second: UNKNOWN_ITEM, then its status (ITEM_NOT_FOR_LOAN,
   ITEM_LOST, ITEM_MISSING, ITEM_WITHDRAWN);
4. its loan: another patron's is ITEM_ON_LOAN_TO_OTHER_PATRON, unless the caller
   asks for such an item to be checked in and lent again; the patron's own is a
   renewal (see `ils.renewals`; one that cannot make the due date later changes
   nothing), or with `renew_if_on_loan` False a repeat of the checkout already
   made, which changes nothing;
5. holds and transit: ITEM_ON_HOLD_FOR_OTHER_PATRON when the item is trapped for
   another patron's hold (waiting on the hold shelf or in transit to them), is
   wanted by an item-level hold of another patron, or other patrons' pending
   holds it could fill outnumber the other copies of the title on the shelf at
   its branch (lending it would leave a hold without a copy);
   ITEM_IN_TRANSIT when it is on its way to another branch;
6. the rule: NO_LOAN_RULE, ITEM_IN_HOUSE_ONLY, then MAX_LOANS_REACHED (of the
   item type, then overall).

A member of staff may waive some of these (`ils.units.OVERRIDABLE`) by naming
them in `override`; the waiver holds only when the applicable rule has
`staff_override`, and the log row of the checkout names what was waived. A
checkout that fills the patron's own hold marks it FULFILLED, and a rule's
rental fee is charged.

A checkout the terminal already made offline (`Overrides.offline`: it lent the
item while it could not reach us, and now reports it) is recorded over every
refusal in `ils.units.OFFLINE_WAIVABLE`, and its log row names them. Unknown
patrons and items, the item's status (step 3) and a missing rule still refuse.
An item on loan to another patron is checked in for them at the offline
checkout's time and lent, if their loan began before that time; a loan that
began after it (lent again since) refuses: staff sort it out. The terminal's own
due date is kept when it falls after the checkout and no later than the rule's
(`Circulation.checkout` drops one already past). A wrong or locked PIN the
terminal sends is refused offline too; only a missing one is recorded over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ils import holds, queries
from ils.checkin import charge_overdue
from ils.fees import borrowing_block, charge_fee
from ils.item_lookup import current_item_view
from ils.models import (
    Branch,
    FeeKind,
    Item,
    ItemStatus,
    Loan,
    LoanEvent,
    LoanRule,
    Patron,
    PatronBlock,
)
from ils.renewals import apply_renewal, renewal_refusal
from ils.results import (
    CheckoutResult,
    CirculationRefused,
    PatronView,
    Refusal,
    renewal_message,
)
from ils.rules.matrix import RuleChoice
from ils.rules.matrix import due_at as rule_due_at
from ils.units import (
    SYSTEM,
    Known,
    LoanChangedHands,
    Overrides,
    card_refusal,
    log_row,
    write_log,
)

# Statuses that refuse a checkout, and the reason each gives.
STATUS_REFUSALS: dict[ItemStatus, Refusal] = {
    ItemStatus.NOT_FOR_LOAN: Refusal.ITEM_NOT_FOR_LOAN,
    ItemStatus.LOST: Refusal.ITEM_LOST,
    ItemStatus.MISSING: Refusal.ITEM_MISSING,
    ItemStatus.WITHDRAWN: Refusal.ITEM_WITHDRAWN,
    ItemStatus.DAMAGED: Refusal.ITEM_NOT_FOR_LOAN,
    ItemStatus.IN_PROCESSING: Refusal.ITEM_NOT_FOR_LOAN,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutRequest:
    """One checkout as a terminal asks for it (see `Circulation.checkout`)."""

    patron_barcode: str
    item_barcode: str
    branch_code: str
    pin_valid: bool | None
    pin_locked: bool
    pin_required: bool
    terminal: str | None
    moment: datetime
    renew_if_on_loan: bool
    checkin_if_on_loan_to_other: bool
    # The due date the terminal gave the patron, for a checkout made offline.
    due_at: datetime | None = None
    # Whether the result carries the patron's account after the checkout.
    account: bool = True


def _lock_patrons(
    session: Session, request: CheckoutRequest, relend: bool
) -> int | None:
    """With check-in-and-lend-again (`relend`), lock the current borrower as well
    as the patron, in id order and before the item; returns the borrower's id as
    read."""
    if not relend:
        return None
    borrower_id = session.scalar(
        sa.select(Loan.patron_id)
        .join(Item, Item.id == Loan.item_id)
        .where(Item.barcode == request.item_barcode, Loan.returned_at.is_(None))
    )
    patron_id = session.scalar(
        sa.select(Patron.id).where(Patron.barcode == request.patron_barcode)
    )
    for locked in sorted(
        {found for found in (borrower_id, patron_id) if found is not None}
    ):
        queries.lock_patron(session, locked)
    return borrower_id


@dataclass(slots=True, kw_only=True)
class _Desk:
    """One checkout under way: what it has found, and how it answers."""

    session: Session
    request: CheckoutRequest
    overrides: Overrides
    branch: Branch
    patron: Patron
    # The patron's open blocks, read once: a checkout does not change them.
    blocks: Sequence[PatronBlock]
    # The patron's general rule at this branch, read once for the limit check
    # and the patron view.
    _general: LoanRule | Literal[queries.Ask.READ] | None = field(default=queries.READ)
    # Whether any hold concerns the item (`queries.holds_touch`), asked once by
    # `check_item`: when none does, the hold checks and the filling are skipped.
    holds_touch: bool = True

    @property
    def zone(self) -> ZoneInfo:
        return queries.branch_zone(self.branch)

    def general_rule(self) -> LoanRule | None:
        if self._general is queries.READ:
            self._general = queries.loan_rule(
                self.session,
                branch_id=self.branch.id,
                category_id=self.patron.category_id,
                item_type_id=None,
            )
        return self._general

    def patron_view(self) -> PatronView:
        return queries.patron_view(
            self.session,
            self.patron,
            self.request.moment,
            self.zone,
            pin_valid=self.request.pin_valid,
            branch_id=self.branch.id,
            general=self.general_rule(),
            blocks=self.blocks,
        )

    def refuse(
        self, reason: Refusal, item: Item | None = None, message: str | None = None
    ) -> CirculationRefused:
        return CirculationRefused(
            reason,
            message,
            patron=self.patron_view(),
            item=None if item is None else queries.item_view(self.session, item),
        )

    def result(
        self,
        item: Item,
        due_at: datetime,
        *,
        renewal: bool,
    ) -> CheckoutResult:
        return CheckoutResult(
            item=current_item_view(self.session, item),
            patron=self.patron_view() if self.request.account else None,
            due_at=due_at,
            renewal=renewal,
        )

    def renew(self, item: Item, loan: Loan, rule: LoanRule) -> CheckoutResult:
        """The patron's own loan, renewed under the renewal rules."""
        moment = self.request.moment
        refusal, new_due = renewal_refusal(
            self.session,
            patron=self.patron,
            item=item,
            loan=loan,
            rule=rule,
            calendar=queries.branch_calendar(self.session, self.branch, self.zone),
            moment=moment,
            overrides=self.overrides,
            require_later=False,
        )
        if refusal is not None:
            raise self.refuse(refusal, item, renewal_message(refusal))
        if new_due <= loan.due_at:
            # Scanned again before the due date could move: confirm the loan.
            return self.result(item, loan.due_at, renewal=False)
        apply_renewal(
            self.session,
            patron=self.patron,
            item=item,
            loan=loan,
            branch=self.branch,
            new_due=new_due,
            moment=moment,
            terminal=self.request.terminal,
            overrides=self.overrides,
        )
        return self.result(item, new_due, renewal=True)

    def check_item(self, item: Item, choice: RuleChoice) -> LoanRule:
        """Holds, transit and the rule's limits for a new loan of `item`."""
        rule = choice.rule
        if rule is None:
            raise self.refuse(Refusal.NO_LOAN_RULE, item)
        today = self.request.moment.astimezone(self.zone).date()
        waive = self.overrides.waive
        self.holds_touch = queries.holds_touch(self.session, item)
        if (
            self.holds_touch
            and holds.hold_for_other(
                self.session, self.patron, item, today, from_shelf=True
            )
            and not waive(Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON, rule)
        ):
            raise self.refuse(Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON, item)
        if item.transit_to_branch_id is not None:
            trapped = queries.trapped_hold(self.session, item)
            mine = trapped is not None and trapped.patron_id == self.patron.id
            if not mine and not waive(Refusal.ITEM_IN_TRANSIT, rule):
                raise self.refuse(Refusal.ITEM_IN_TRANSIT, item)
        if choice.in_house_only and not waive(Refusal.ITEM_IN_HOUSE_ONLY, rule):
            raise self.refuse(Refusal.ITEM_IN_HOUSE_ONLY, item)
        if queries.over_limit(
            self.session, self.patron, self.branch.id, rule, general=self.general_rule()
        ) and not waive(Refusal.MAX_LOANS_REACHED, rule):
            raise self.refuse(Refusal.MAX_LOANS_REACHED, item)
        return rule

    def end_others_loan(self, item: Item, loan: Loan) -> None:
        """Lent again by policy: the other patron's loan ends now, fined as due."""
        loan.returned_at = max(self.request.moment, loan.checked_out_at)
        if loan.patron is not None:
            charge_overdue(
                self.session,
                patron=loan.patron,
                loan=loan,
                item=item,
                at=loan.returned_at,
                terminal=self.request.terminal,
            )
        self.session.add(
            log_row(
                at=loan.returned_at,
                event=LoanEvent.CHECKIN,
                terminal=self.request.terminal,
                item_id=item.id,
                patron_id=loan.patron_id,
                branch_id=self.branch.id,
                detail="returned by a checkout to another patron",
            )
        )
        self.session.flush()

    def lend(self, item: Item, rule: LoanRule) -> CheckoutResult:
        """Every check passed: the new loan, the hold it fills, the rental fee."""
        session, moment = self.session, self.request.moment
        today = moment.astimezone(self.zone).date()
        filled = (
            holds.fulfil_for_checkout(session, self.patron, item, moment, today)
            if self.holds_touch
            else None
        )
        item.transit_to_branch_id = None
        item.transit_since = None
        calendar = queries.branch_calendar(session, self.branch, self.zone)
        due_at = rule_due_at(rule, moment, calendar)
        told = self.request.due_at
        if told is not None and moment < told <= due_at:
            # Offline, the terminal gave the patron this date: it stands.
            due_at = told
        loan = Loan(
            item_id=item.id,
            patron_id=self.patron.id,
            branch_id=self.branch.id,
            checked_out_at=moment,
            due_at=due_at,
            renewals=0,
            patron_category_id=self.patron.category_id,
        )
        session.add(loan)
        session.flush()
        detail = f"due {due_at.isoformat()}{self.overrides.note()}"
        if filled is not None:
            detail += f"; fills hold {filled.id}"
        write_log(
            session,
            log_row(
                at=moment,
                event=LoanEvent.CHECKOUT,
                terminal=self.request.terminal,
                item_id=item.id,
                patron_id=self.patron.id,
                branch_id=self.branch.id,
                detail=detail,
            ),
        )
        if rule.rental_fee_minor:
            # (The title is read for the fee's description only when one is due.)
            charge_fee(
                session,
                patron=self.patron,
                kind=FeeKind.RENTAL,
                amount_minor=rule.rental_fee_minor,
                description=f"rental: {item.record.title}",
                by=self.request.terminal or SYSTEM,
                moment=moment,
                item=item,
                loan=loan,
            )
        session.flush()
        return self.result(item, due_at, renewal=False)


def _waive_card(
    desk: _Desk, card: Refusal | None, rule: LoanRule | None, item: Item
) -> None:
    """Waive the card's refusals, or refuse for the first that is not waived.

    Raises:
        CirculationRefused: for that refusal.
    """
    for reason in _card_reasons(desk, card):
        if not desk.overrides.waive(reason, rule):
            raise desk.refuse(reason, item)


def _card_reasons(desk: _Desk, first: Refusal | None) -> list[Refusal]:
    """The card's refusals to waive: the first found, and for a checkout made
    offline every other as well, so that the log row names them all."""
    if first is None or not desk.overrides.offline:
        return [] if first is None else [first]
    patron, moment = desk.patron, desk.request.moment
    found = [first] if first in _PIN_REFUSALS else []
    found += [
        reason
        for reason, applies in (
            (Refusal.CARD_LOST, patron.card_lost),
            (Refusal.CARD_EXPIRED, queries.card_expired(patron, moment, desk.zone)),
            (Refusal.PATRON_BLOCKED, bool(desk.blocks)),
        )
        if applies
    ]
    automatic = borrowing_block(desk.session, patron, moment)
    if automatic is not None:
        found.append(automatic)
    return found


_PIN_REFUSALS = (Refusal.PIN_LOCKED, Refusal.WRONG_PIN, Refusal.PIN_REQUIRED)


def _may_end(request: CheckoutRequest, overrides: Overrides, loan: Loan) -> bool:
    """Whether another patron's loan of the item may end for this checkout: by
    policy, or offline when it began before the item was lent (the item was in
    hand then, so that loan was over; one made since is a newer fact)."""
    if request.checkin_if_on_loan_to_other:
        return True
    return overrides.offline and loan.checked_out_at <= request.moment


def check_out(
    session: Session,
    known: Known,
    request: CheckoutRequest,
    overrides: Overrides,
) -> CheckoutResult:
    """Lend the item, renew it, or refuse (see the module's docstring).

    Raises:
        CirculationRefused: for the first reason that applies.
        LoanChangedHands: the loan moved between reading and locking; retry.
    """
    branch = queries.branch_by_code(session, request.branch_code)
    if branch is None:
        raise CirculationRefused(Refusal.UNKNOWN_BRANCH)
    known.branch_id = branch.id

    # The patron, locked first: their loan count must not move under us.
    relend = request.checkin_if_on_loan_to_other or overrides.offline
    borrower_id = _lock_patrons(session, request, relend)
    patron = queries.patron_by_barcode(session, request.patron_barcode, lock=True)
    if patron is None:
        raise CirculationRefused(Refusal.UNKNOWN_PATRON)
    known.patron_id = patron.id
    desk = _Desk(
        session=session,
        request=request,
        overrides=overrides,
        branch=branch,
        patron=patron,
        blocks=queries.open_blocks(session, patron),
    )

    # The card. An automatic block staff asked to waive waits for the rule.
    card = card_refusal(
        session,
        patron,
        request.moment,
        desk.zone,
        pin_valid=request.pin_valid,
        pin_locked=request.pin_locked,
        pin_required=request.pin_required,
        blocks=desk.blocks,
    )
    if card is not None and not overrides.may_waive(card):
        raise desk.refuse(card)

    # The item, locked second.
    item = queries.item_by_barcode(session, request.item_barcode, lock=True)
    if item is None:
        raise desk.refuse(Refusal.UNKNOWN_ITEM)
    known.item_id = item.id
    status_refusal = STATUS_REFUSALS.get(item.status)
    if status_refusal is not None:
        raise desk.refuse(status_refusal, item)

    loan = queries.open_loan(session, item, lock=True)
    others_loan = loan is not None and loan.patron_id != patron.id
    if relend and loan is not None and loan.patron_id not in (None, borrower_id):
        raise LoanChangedHands
    choice, desk._general = queries.loan_rules_for(
        session,
        branch_id=branch.id,
        category_id=patron.category_id,
        item_type_id=item.item_type_id,
    )
    _waive_card(desk, card, choice.rule, item)
    if loan is not None and others_loan and not _may_end(request, overrides, loan):
        raise desk.refuse(Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON, item)

    if loan is not None and not others_loan:
        # The patron has it already. Renewal not wanted: this checkout was made
        # before; answer it again without using up a renewal.
        if not request.renew_if_on_loan:
            return desk.result(item, loan.due_at, renewal=False)
        if choice.rule is None:
            raise desk.refuse(Refusal.NO_LOAN_RULE, item)
        return desk.renew(item, loan, choice.rule)

    rule = desk.check_item(item, choice)
    if loan is not None:
        desk.end_others_loan(item, loan)
    return desk.lend(item, rule)
