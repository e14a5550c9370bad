"""What every answer needs: the request's desk (account, policy, time, zone), the
core's services, and the conversions between the core's values and SIP2's.

Layer: `sip2server`. Imports `ils` (results, services) and the codec; never
Twisted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from ils.circulation import Circulation
from ils.currency import format_amount
from ils.db import Database
from ils.fees import FeeService
from ils.patron_status import PatronConditions
from ils.results import (
    REFUSAL_MESSAGES,
    CirculationRefused,
    ItemView,
    PatronView,
    Refusal,
)
from ils.terminal_requests import TerminalRequests
from sip2server.config import AccountConfig
from sip2server.policy import DEFAULT_POLICY, TerminalPolicy
from sip2server.protocol import (
    DueDateStyle,
    MediaType,
    PatronStatus,
    write_due_date,
)
from sip2server.templates import Template


@dataclass(frozen=True, slots=True)
class Services:
    """The core's services the answers call."""

    circulation: Circulation
    terminal_requests: TerminalRequests | None
    fees: FeeService | None
    database: Database | None
    clock: Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Desk:
    """One request's circumstances: who asked, under which policy, when, where."""

    account: AccountConfig
    policy: TerminalPolicy
    # The branch's local time, naive, as SIP2 dates without a zone are read.
    now: datetime
    # The same moment, aware (UTC), for the core.
    moment: datetime
    zone: ZoneInfo
    # The longest reply with lists in it (a 64), in bytes on the wire: the
    # server's `max_frame_bytes`, the longest frame it reads itself.
    reply_bytes: int = 8192

    @property
    def style(self) -> DueDateStyle:
        """How this account writes AH."""
        return self.account.due_date_format

    def institution(self, given: str | None) -> str:
        """AO as the request gave it, or the account's institution."""
        return given or self.account.institution

    def due(self, moment: datetime) -> str:
        """A due date (AH) in the branch's local time, in the account's style."""
        return due_date(moment, self.zone, self.style)


def served_institutions(desk: Desk) -> frozenset[str]:
    """The institution codes the desk's account may serve: its own and those its
    policy lists in `serves_institutions`."""
    return frozenset({desk.account.institution, *desk.policy.serves_institutions})


def policy_of(account: AccountConfig) -> TerminalPolicy:
    """The account's terminal policy (the defaults when it has none)."""
    policy = getattr(account, "policy", None)
    return policy if isinstance(policy, TerminalPolicy) else DEFAULT_POLICY


def due_date(moment: datetime, zone: ZoneInfo, style: DueDateStyle) -> str:
    """A due date (AH) in a branch's local time, in the account's style."""
    return write_due_date(moment.astimezone(zone).replace(tzinfo=None), style)


def money(minor_units: int, currency: str | None = None) -> str:
    """An amount in minor units as SIP2 writes it, with the currency's decimal
    places (two when it is not given or not known): 1250 GBP -> "12.50",
    1250 JPY -> "1250"."""
    if currency is not None:
        try:
            return format_amount(minor_units, currency)
        except CirculationRefused:
            pass
    sign = "-" if minor_units < 0 else ""
    whole, cents = divmod(abs(minor_units), 100)
    return f"{sign}{whole}.{cents:02d}"


def media_type(code: str) -> MediaType:
    """The item type's media type, OTHER for a code SIP2 does not define."""
    try:
        return MediaType(code)
    except ValueError:
        return MediaType.OTHER


def mask(identifier: str) -> str:
    """An identifier with all but its last four characters as `*`."""
    if len(identifier) <= 4:
        return "*" * len(identifier)
    return "*" * (len(identifier) - 4) + identifier[-4:]


def patron_status(patron: PatronView | None) -> PatronStatus:
    """The 14 status flags from a patron view (used where no standing is read)."""
    if patron is None:
        # An unknown card may do nothing.
        return PatronStatus(
            charge_privileges_denied=True,
            renewal_privileges_denied=True,
            recall_privileges_denied=True,
            hold_privileges_denied=True,
        )
    denied = not patron.may_borrow
    at_limit = patron.max_loans is not None and len(patron.loans) >= patron.max_loans
    return PatronStatus(
        charge_privileges_denied=denied or at_limit,
        renewal_privileges_denied=denied,
        recall_privileges_denied=denied,
        hold_privileges_denied=denied,
        card_reported_lost=patron.card_lost,
        too_many_items_charged=at_limit,
    )


def status_of(conditions: PatronConditions) -> PatronStatus:
    """The 14 status flags, position by position, from the core's conditions."""
    return PatronStatus(
        **{
            field.name: getattr(conditions, field.name)
            for field in dataclasses.fields(PatronStatus)
        }
    )


def patron_messages(patron: PatronView | None) -> tuple[str, ...]:
    """What a terminal shows about a card that cannot be used, if anything."""
    if patron is None:
        return ("This library card is not recognised.",)
    if patron.pin_locked:
        return (
            "Too many wrong PINs: this card's PIN is locked for now; please ask staff.",
        )
    if patron.card_lost:
        return ("This library card has been reported lost; please ask staff.",)
    if patron.expired:
        return ("This library card has expired; please ask staff.",)
    if patron.blocked:
        return ("Borrowing is blocked on this account; please ask staff.",)
    if patron.pin_valid is False:
        return ("The PIN does not match this library card.",)
    return ()


def pin_refusal(services: Services, desk: Desk, barcode: str, pin: str) -> str | None:
    """The screen message refusing a request for a wrong, locked or missing PIN.

    For requests whose core call does not check the PIN itself (37, 15, and 65
    for a patron with nothing on loan): a given PIN (AD) is checked as 11 and 63
    check it, counting a wrong one towards the lock; none is needed unless the
    account requires one. With `pin` empty nothing is read: 23, 25, 29 and 63
    call it so to refuse a request without AD under `patron_pin_required`.
    None when the request may go on (an unknown card included: the request's
    own answer says so).
    """
    reason: Refusal | None = None
    if not pin:
        if desk.account.patron_pin_required:
            reason = Refusal.PIN_REQUIRED
    else:
        patron = services.circulation.patron(
            barcode, pin=pin, terminal=desk.account.login
        )
        if patron is not None and patron.pin_valid is False:
            reason = Refusal.PIN_LOCKED if patron.pin_locked else Refusal.WRONG_PIN
    if reason is None:
        return None
    return desk.policy.screen_text(reason.value, REFUSAL_MESSAGES[reason])


def patron_values(patron: PatronView) -> dict[str, str]:
    """A patron's names for templates (see `sip2server.templates`)."""
    return {
        "barcode": patron.barcode,
        "barcode_last4": patron.barcode[-4:],
        "surname": patron.surname,
        "firstname": patron.firstname,
        "firstname_initial": patron.firstname[:1],
        "full_name": patron.full_name,
        "category_code": patron.category_code,
        "home_branch_code": patron.home_branch_code,
        "email": patron.email or "",
        "phone": patron.phone or "",
        "expires_on": (
            "" if patron.expires_on is None else patron.expires_on.strftime("%Y%m%d")
        ),
        "fines": money(patron.fines_minor, patron.currency),
        "currency": patron.currency,
        "loans": str(len(patron.loans)),
        "overdue": str(patron.overdue_count),
    }


def item_values(item: ItemView) -> dict[str, str]:
    """An item's names for templates (see `sip2server.templates`)."""
    return {
        "barcode": item.barcode,
        "title": item.title,
        "author": item.author or "",
        "call_number": item.call_number or "",
        "item_type_code": item.item_type_code,
        "media_type": item.media_type,
        "home_branch_code": item.home_branch_code,
        "current_branch_code": item.current_branch_code,
        "location": item.location or "",
        "collection": item.collection or "",
        "status": item.status.value,
        "hold_queue_length": str(item.hold_queue_length),
        "in_transit_to": item.in_transit_to or "",
    }


def template_fields(
    templates: tuple[tuple[str, Template], ...], root: str, values: dict[str, str]
) -> tuple[tuple[str, str], ...]:
    """Extra fields rendered from a policy's templates; empty results left out."""
    rendered = []
    for code, template in templates:
        text = template.render({root: values})
        if text:
            rendered.append((code, text))
    return tuple(rendered)
