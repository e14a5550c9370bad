"""Hold (15/16): place (+), cancel (-) and change (*) a patron's hold.

Layer: `sip2server`. Imports `ils` results, models (to find a title by name)
and services, and the codec; never Twisted.

A hold names its title by an item (AB) or by the title itself (AJ, matched
exactly but without regard to case, among the records with a copy in an
institution the account serves: a title only other institutions hold is not
recognised, as an unknown item is; a title that matches several records is
refused as ambiguous). BS is the pickup branch (the terminal's branch when
absent), BW the last day the patron wants it (a day already past is
refused), BY 3 (specific copy) an item-level hold. With both AB and AJ, AB
says what is held, and an AJ that is not that item's title is refused.
Cancel and change find the patron's open hold by the item or the title given.
Change (*) sets the pickup branch to BS and the last day to BW, either or both,
in one transaction: a refusal of either (an unknown or disallowed branch, a day
already past, a last day for a hold whose copy is already set aside) changes
nothing. What is not sent is kept; a BW cannot clear the last day, since a blank
BW reads as no BW.

A given AD is checked before any of the three modes (a wrong or locked PIN
refuses, as for 37); under the account's `patron_pin_required` a request without
AD is refused with "Please enter your PIN." and nothing is placed, cancelled or
changed.
"""

from __future__ import annotations

from datetime import date, datetime, time

import sqlalchemy as sa

from ils.holds import KEEP
from ils.models import BibRecord, Branch, Institution, Item
from ils.results import CirculationRefused, HoldView, Refusal
from sip2server.answers.common import (
    Desk,
    Services,
    pin_refusal,
    served_institutions,
)
from sip2server.protocol import HoldMode, HoldRequest, HoldResponse, HoldType

AMBIGUOUS_TITLE = (
    "Several titles have that name; please scan an item of the one you want."
)
UNKNOWN_PICKUP = "That pickup branch is not known; please choose another."
NO_TITLE = "Please scan an item of the title you want to reserve."
PAST_EXPIRY = "That last date has already passed; please give a later one."
TITLE_MISMATCH = (
    "The item scanned is not of the title named; please scan an item of the "
    "title you want."
)


def _record_by_title(
    services: Services, title: str, served: frozenset[str]
) -> int | None:
    """The record with this title that has a copy (by its home branch) in one of
    the `served` institutions; a title only other libraries hold is not found."""
    if services.database is None:
        return None
    held_here = (
        sa.select(Item.id)
        .join(Branch, Item.home_branch_id == Branch.id)
        .join(Institution, Branch.institution_id == Institution.id)
        .where(Item.record_id == BibRecord.id, Institution.code.in_(sorted(served)))
    )
    with services.database.read() as session:
        found = session.scalars(
            sa.select(BibRecord.id)
            .where(
                sa.func.lower(BibRecord.title) == title.strip().lower(),
                held_here.exists(),
            )
            .limit(2)
        ).all()
    if len(found) > 1:
        raise CirculationRefused(Refusal.UNKNOWN_ITEM, AMBIGUOUS_TITLE)
    return found[0] if found else None


def _find_hold(services: Services, request: HoldRequest) -> HoldView:
    holds = services.circulation.holds_of(request.patron_identifier)
    item = request.item_identifier
    title = (request.title_identifier or "").strip().casefold()
    for hold in (*holds.available, *holds.pending):
        if item and item in (hold.item_barcode, hold.trapped_item_barcode):
            return hold
        if title and hold.title.casefold() == title:
            return hold
    if item and not title:
        # A hold on the title, named by another copy's barcode.
        seen = services.circulation.item(item)
        if seen is not None:
            for hold in (*holds.available, *holds.pending):
                if hold.title == seen.title and hold.item_barcode is None:
                    return hold
    raise CirculationRefused(Refusal.HOLD_NOT_FOUND)


def hold(services: Services, desk: Desk, request: HoldRequest) -> HoldResponse:
    """Place, cancel or change a hold, by the request's hold mode."""
    institution = desk.institution(request.institution_id)
    # Under patron_pin_required no hold is placed, cancelled or changed for a
    # card without its PIN; a given PIN is checked first, as for 37.
    refused = pin_refusal(
        services, desk, request.patron_identifier, request.patron_password or ""
    )
    if refused is not None:
        return _refused(desk, institution, request, refused)
    try:
        if request.hold_mode is HoldMode.ADD:
            view = _place(services, desk, request)
            text = (
                "Your reservation is waiting for you."
                if view.available
                else "Reserved"
                + (
                    ""
                    if view.queue_position is None
                    else f"; you are number {view.queue_position} in the queue"
                )
                + "."
            )
        elif request.hold_mode is HoldMode.DELETE:
            found = _find_hold(services, request)
            view = services.circulation.cancel_hold(
                request.patron_identifier, found.hold_id, terminal=desk.account.login
            )
            text = "Reservation cancelled."
        else:
            found = _find_hold(services, request)
            view = services.circulation.change_hold(
                request.patron_identifier,
                found.hold_id,
                pickup_branch_code=request.pickup_location or None,
                expires_on=KEEP
                if request.expiration_date is None
                else _local_day(desk, request.expiration_date),
                terminal=desk.account.login,
            )
            text = f"Reservation to be collected at {view.pickup_branch_code}" + (
                "."
                if view.expires_on is None
                else f", wanted until {view.expires_on:%d %B %Y}."
            )
    except CirculationRefused as refusal:
        text = refusal.message
        if refusal.reason is Refusal.UNKNOWN_BRANCH and request.pickup_location:
            # The core's sentence speaks of the terminal's branch; here it was BS.
            text = UNKNOWN_PICKUP
        return _refused(
            desk,
            institution,
            request,
            desk.policy.screen_text(refusal.reason.value, text),
        )
    return HoldResponse(
        ok=True,
        available=view.available,
        transaction_date=desk.now,
        expiration_date=(None if view.expires_on is None else _end_of(view.expires_on)),
        queue_position=view.queue_position,
        pickup_location=view.pickup_branch_code,
        institution_id=institution,
        patron_identifier=request.patron_identifier,
        item_identifier=view.trapped_item_barcode
        or view.item_barcode
        or request.item_identifier,
        title_identifier=view.title,
        screen_message=(text,),
    )


def _refused(
    desk: Desk, institution: str, request: HoldRequest, text: str
) -> HoldResponse:
    """16 with ok 0: nothing placed, cancelled or changed."""
    return HoldResponse(
        ok=False,
        available=False,
        transaction_date=desk.now,
        institution_id=institution,
        patron_identifier=request.patron_identifier,
        item_identifier=request.item_identifier,
        title_identifier=request.title_identifier,
        pickup_location=request.pickup_location,
        screen_message=(text,),
    )


def _end_of(day: date) -> datetime:
    # BW is a date and time; a hold lasts to the end of its last day.
    return datetime.combine(day, time(23, 59, 59))


def _local_day(desk: Desk, moment: datetime) -> date:
    """The branch's date of a SIP2 date: as written when it is local (no zone),
    turned into the branch's time zone when it names one (`   Z`)."""
    if moment.tzinfo is None:
        return moment.date()
    return moment.astimezone(desk.zone).date()


def _place(services: Services, desk: Desk, request: HoldRequest) -> HoldView:
    # BW is the branch's local date: a day before today is already over.
    expires = (
        None
        if request.expiration_date is None
        else _local_day(desk, request.expiration_date)
    )
    if expires is not None and expires < desk.now.date():
        raise CirculationRefused(Refusal.HOLDS_NOT_ALLOWED, PAST_EXPIRY)
    if request.item_identifier and request.title_identifier:
        # AB decides what is held; an AJ naming another title is a mistake.
        item = services.circulation.item(request.item_identifier)
        named = request.title_identifier.strip().casefold()
        if item is not None and item.title.strip().casefold() != named:
            raise CirculationRefused(Refusal.UNKNOWN_ITEM, TITLE_MISMATCH)
    record_id = None
    if not request.item_identifier:
        if not request.title_identifier:
            raise CirculationRefused(Refusal.UNKNOWN_ITEM, NO_TITLE)
        record_id = _record_by_title(
            services, request.title_identifier, served_institutions(desk)
        )
        if record_id is None:
            raise CirculationRefused(Refusal.UNKNOWN_ITEM)
    return services.circulation.place_hold(
        request.patron_identifier,
        pickup_branch_code=request.pickup_location or desk.account.location,
        item_barcode=request.item_identifier or None,
        record_id=record_id,
        item_level=request.hold_type is HoldType.SPECIFIC_COPY,
        expires_on=expires,
        pin=request.patron_password or None,
        terminal=desk.account.login,
    )
