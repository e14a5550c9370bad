"""What the circulation core answers: views of patrons, items and loans, results of
use cases, and refusals with a domain reason.

Layer: `ils`, the bottom. Imports only the standard library and `ils.models`
(for `ItemStatus` and `HoldStatus`). Nothing here knows SIP2: the server's
mapping layer turns these values into messages, and a `Refusal` into `ok=0`, a
screen message and an alert.

Every time is timezone-aware UTC; money is an integer count of minor units beside
an ISO 4217 currency code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime

from ils.models import HoldStatus, ItemStatus


class Refusal(enum.Enum):
    """Why the core refused a circulation request."""

    UNKNOWN_PATRON = "unknown_patron"
    UNKNOWN_ITEM = "unknown_item"
    PIN_REQUIRED = "pin_required"
    WRONG_PIN = "wrong_pin"
    CARD_EXPIRED = "card_expired"
    CARD_LOST = "card_lost"
    PATRON_BLOCKED = "patron_blocked"
    MAX_LOANS_REACHED = "max_loans_reached"
    ITEM_NOT_FOR_LOAN = "item_not_for_loan"
    # The loan rule keeps this kind of item in the building.
    ITEM_IN_HOUSE_ONLY = "item_in_house_only"
    ITEM_LOST = "item_lost"
    ITEM_MISSING = "item_missing"
    ITEM_WITHDRAWN = "item_withdrawn"
    ITEM_ON_LOAN_TO_OTHER_PATRON = "item_on_loan_to_other_patron"
    RENEWAL_LIMIT_REACHED = "renewal_limit_reached"
    NO_LOAN_RULE = "no_loan_rule"
    UNKNOWN_BRANCH = "unknown_branch"
    # The database kept turning the request away (deadlocks, or a loan changing
    # hands) for every attempt; nothing was changed, and the same request may
    # succeed when sent again.
    TRY_AGAIN = "try_again"
    # Added by issue #4.
    PIN_LOCKED = "pin_locked"
    FEES_OVER_LIMIT = "fees_over_limit"
    OVERDUES_OVER_LIMIT = "overdues_over_limit"
    ITEM_ON_HOLD_FOR_OTHER_PATRON = "item_on_hold_for_other_patron"
    ITEM_IN_TRANSIT = "item_in_transit"
    ITEM_NOT_ON_LOAN = "item_not_on_loan"
    DUE_DATE_NOT_LATER = "due_date_not_later"
    HOLDS_NOT_ALLOWED = "holds_not_allowed"
    MAX_HOLDS_REACHED = "max_holds_reached"
    ALREADY_ON_HOLD = "already_on_hold"
    PICKUP_BRANCH_NOT_ALLOWED = "pickup_branch_not_allowed"
    HOLD_NOT_FOUND = "hold_not_found"
    FEE_NOT_FOUND = "fee_not_found"
    NOTHING_OWED = "nothing_owed"
    OVERPAYMENT_REFUSED = "overpayment_refused"
    WRONG_CURRENCY = "wrong_currency"
    INVALID_AMOUNT = "invalid_amount"
    LOANS_OPEN = "loans_open"
    FEES_OPEN = "fees_open"
    # A return dated (offline) before the item's current loan began.
    RETURN_BEFORE_LOAN = "return_before_loan"


# One plain sentence per reason, fit for a kiosk screen or a staff log.
REFUSAL_MESSAGES: dict[Refusal, str] = {
    Refusal.UNKNOWN_PATRON: "This library card is not recognised.",
    Refusal.UNKNOWN_ITEM: "This item is not recognised.",
    Refusal.PIN_REQUIRED: "Please enter your PIN.",
    Refusal.WRONG_PIN: "The PIN does not match this library card.",
    Refusal.CARD_EXPIRED: "This library card has expired; please ask staff.",
    Refusal.CARD_LOST: "This library card has been reported lost; please ask staff.",
    Refusal.PATRON_BLOCKED: "Borrowing is blocked on this account; please ask staff.",
    Refusal.MAX_LOANS_REACHED: "You have borrowed as many items as you may.",
    Refusal.ITEM_NOT_FOR_LOAN: "This item cannot be borrowed.",
    Refusal.ITEM_IN_HOUSE_ONLY: (
        "This item is for use in the library only and cannot be taken out."
    ),
    Refusal.ITEM_LOST: "This item is recorded as lost; please take it to staff.",
    Refusal.ITEM_MISSING: "This item is recorded as missing; please take it to staff.",
    Refusal.ITEM_WITHDRAWN: "This item has been withdrawn; please take it to staff.",
    Refusal.ITEM_ON_LOAN_TO_OTHER_PATRON: (
        "This item is on loan to someone else; please take it to staff."
    ),
    Refusal.RENEWAL_LIMIT_REACHED: "This item cannot be renewed again.",
    Refusal.NO_LOAN_RULE: "This item cannot be borrowed on this card; ask staff.",
    Refusal.UNKNOWN_BRANCH: "This terminal's branch is not known to the library.",
    Refusal.TRY_AGAIN: "The library system is busy; please try again.",
    Refusal.PIN_LOCKED: (
        "Too many wrong PINs: this card's PIN is locked for now; please ask staff."
    ),
    Refusal.FEES_OVER_LIMIT: (
        "Borrowing is blocked until fees on this account are paid; please ask staff."
    ),
    Refusal.OVERDUES_OVER_LIMIT: (
        "Borrowing is blocked until overdue items are returned."
    ),
    Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON: (
        "This item is reserved for someone else; please take it to staff."
    ),
    Refusal.ITEM_IN_TRANSIT: (
        "This item is on its way to another branch; please take it to staff."
    ),
    Refusal.ITEM_NOT_ON_LOAN: "This item is not on loan to this card.",
    Refusal.RETURN_BEFORE_LOAN: (
        "This return is dated before the item was lent again, so the new loan"
        " stays open; please ask staff to check the item."
    ),
    Refusal.DUE_DATE_NOT_LATER: (
        "Renewing now would not give a later due date; please try again later."
    ),
    Refusal.HOLDS_NOT_ALLOWED: "This item cannot be reserved on this card.",
    Refusal.MAX_HOLDS_REACHED: "You have as many reservations as you may.",
    Refusal.ALREADY_ON_HOLD: "You have already reserved this title.",
    Refusal.PICKUP_BRANCH_NOT_ALLOWED: (
        "This item cannot be collected at that branch; please choose another."
    ),
    Refusal.HOLD_NOT_FOUND: "That reservation was not found on this card.",
    Refusal.FEE_NOT_FOUND: "That charge was not found on this card.",
    Refusal.NOTHING_OWED: "Nothing is owed on this card.",
    Refusal.OVERPAYMENT_REFUSED: "That is more than is owed; please pay less.",
    Refusal.WRONG_CURRENCY: "That currency is not accepted here.",
    Refusal.INVALID_AMOUNT: "That amount cannot be paid.",
    Refusal.LOANS_OPEN: "This card still has items on loan.",
    Refusal.FEES_OPEN: "This card still has unpaid charges.",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemView:
    """An item as a terminal needs to see it, with its loan if it has one."""

    barcode: str
    title: str
    author: str | None
    call_number: str | None
    item_type_code: str
    # The item type's 3-digit media type code ("001" is a book).
    media_type: str
    home_branch_code: str
    current_branch_code: str
    location: str | None
    collection: str | None
    status: ItemStatus
    on_loan: bool
    due_at: datetime | None
    borrower_barcode: str | None
    price_minor: int | None
    currency: str
    # Added by issue #4, for gates, sorters and kiosks: pending holds this item
    # could fill; the branch it is on its way to; and, when it is trapped for a
    # hold, whose hold, where it is picked up and (once on the hold shelf) by when.
    hold_queue_length: int = 0
    in_transit_to: str | None = None
    on_hold_shelf: bool = False
    hold_patron_barcode: str | None = None
    hold_pickup_branch_code: str | None = None
    hold_pickup_deadline: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoanView:
    """One open loan on a patron's account."""

    item_barcode: str
    title: str
    checked_out_at: datetime
    due_at: datetime
    overdue: bool
    renewals: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PatronView:
    """A patron's account as a terminal may show it.

    `pin_valid` is None when no PIN was given to check. `may_borrow` says only
    that the card is usable (not expired, lost or blocked); a checkout can still
    be refused for the item or for the number of loans.
    """

    barcode: str
    surname: str
    firstname: str
    full_name: str
    category_code: str
    home_branch_code: str
    expires_on: date | None
    expired: bool
    card_lost: bool
    blocked: bool
    block_notes: tuple[str, ...]
    email: str | None
    phone: str | None
    has_pin: bool
    pin_valid: bool | None
    loans: tuple[LoanView, ...]
    overdue_count: int
    max_loans: int | None
    # The sum of the patron's open fee balances (ils.fees).
    fines_minor: int
    currency: str
    may_borrow: bool
    # Too many wrong PINs: the PIN is locked for now (ils.pins).
    pin_locked: bool = False
    # Money paid beyond what was owed, kept to pay later fees.
    credit_minor: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutResult:
    """A checkout or renewal that was made; `renewal` says which. `patron` is
    the account after it, None when the caller asked for none (`account=False`:
    a SIP2 12 or 30 carries nothing of it, and reading it costs a quarter of a
    checkout)."""

    item: ItemView
    patron: PatronView | None
    due_at: datetime
    renewal: bool


class CheckinAlert(enum.Enum):
    """What a returned item needs, beyond going back on the shelf here.

    A checkin raises `CirculationRefused(UNKNOWN_ITEM)` for a barcode the library
    does not know; UNKNOWN is the kind a caller reports for that refusal.
    """

    NONE = "none"
    # Trapped for a hold picked up here: put it on the hold shelf.
    HOLD_HERE = "hold_here"
    # Trapped for a hold picked up at another branch: send it there.
    HOLD_TRANSIT = "hold_transit"
    # It belongs to another branch: send it home.
    TRANSIT_HOME = "transit_home"
    # It was not on loan (and not arriving from a transit).
    NOT_ON_LOAN = "not_on_loan"
    # It was recorded lost or missing and is back.
    LOST_FOUND = "lost_found"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckinResult:
    """A return, whether or not the item was on loan.

    The fields added by issue #4 say what happens next: `destination_branch_code`
    is where the item must go (None: it stays here), `alert` why, and for a hold
    whose patron and pickup deadline. `fine_minor` is the overdue fine charged.
    """

    item: ItemView
    was_on_loan: bool
    patron_barcode: str | None
    returned_at: datetime
    return_branch_code: str
    alert: CheckinAlert = CheckinAlert.NONE
    permanent_location: str | None = None
    home_branch_code: str | None = None
    destination_branch_code: str | None = None
    hold_patron_barcode: str | None = None
    hold_pickup_deadline: datetime | None = None
    fine_minor: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewOutcome:
    """One item of a renew-all: renewed to `due_at`, or refused for `refusal`."""

    item_barcode: str
    title: str
    renewed: bool
    due_at: datetime
    refusal: Refusal | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewAllResult:
    """Every loan of a patron's renew-all, each with its own outcome."""

    patron: PatronView
    outcomes: tuple[RenewOutcome, ...]

    @property
    def renewed(self) -> tuple[RenewOutcome, ...]:
        """The loans that were renewed."""
        return tuple(outcome for outcome in self.outcomes if outcome.renewed)

    @property
    def refused(self) -> tuple[RenewOutcome, ...]:
        """The loans that were not renewed, each with its reason."""
        return tuple(outcome for outcome in self.outcomes if not outcome.renewed)


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldView:
    """A hold as a patron or terminal sees it.

    `available` holds (WAITING: on the hold shelf, to be picked up by
    `pickup_deadline`) and pending ones (PENDING in the queue, or IN_TRANSIT to
    the pickup branch) are different lists for a terminal. `queue_position`
    counts PENDING holds on the title from 1 in placement order; None otherwise.
    """

    hold_id: int
    patron_barcode: str | None
    record_id: int
    title: str
    author: str | None
    # Set for an item-level hold.
    item_barcode: str | None
    pickup_branch_code: str
    status: HoldStatus
    placed_at: datetime
    expires_on: date | None
    trapped_item_barcode: str | None
    pickup_deadline: datetime | None
    queue_position: int | None

    @property
    def available(self) -> bool:
        """Waiting on the hold shelf for the patron."""
        return self.status is HoldStatus.WAITING

    @property
    def pending(self) -> bool:
        """In the queue or on its way to the pickup branch."""
        return self.status in (HoldStatus.PENDING, HoldStatus.IN_TRANSIT)


# Where a renewal needs other words than a checkout for the same reason: the
# patron has the item in hand and keeps it until the due date.
RENEWAL_MESSAGES: dict[Refusal, str] = {
    Refusal.ITEM_ON_HOLD_FOR_OTHER_PATRON: (
        "Someone else is waiting for this item, so it cannot be renewed;"
        " please return it by the due date."
    ),
}


def renewal_message(reason: Refusal) -> str:
    """The sentence for a renewal refused for `reason`."""
    return RENEWAL_MESSAGES.get(reason, REFUSAL_MESSAGES[reason])


@dataclass(frozen=True, slots=True, kw_only=True)
class PullSlip:
    """A pending hold that a copy on an open shelf can fill now: the copy staff
    should pull, where to find it, and where it goes."""

    hold_id: int
    patron_barcode: str | None
    title: str
    item_barcode: str
    call_number: str | None
    location: str | None
    shelf_branch_code: str
    pickup_branch_code: str
    placed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PatronHolds:
    """A patron's open holds, available ones apart from pending ones."""

    available: tuple[HoldView, ...]
    pending: tuple[HoldView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldExpiry:
    """What `expire_holds` did: holds expired, and holds an item passed on to."""

    expired: tuple[HoldView, ...]
    trapped: tuple[HoldView, ...]


class CirculationRefused(Exception):  # noqa: N818 - a refusal is not an error
    """The core refused a request, for `reason`.

    Attributes:
        reason: the domain reason.
        message: one plain-English sentence for staff and patrons, with no codes.
        item: the item, when it is known.
        patron: the patron, when they are known.
    """

    def __init__(
        self,
        reason: Refusal,
        message: str | None = None,
        *,
        item: ItemView | None = None,
        patron: PatronView | None = None,
    ) -> None:
        self.reason = reason
        self.message = message if message is not None else REFUSAL_MESSAGES[reason]
        self.item = item
        self.patron = patron
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"CirculationRefused({self.reason.name}, {self.message!r})"
