"""Checkin (09/10) for kiosks and sorters, item information (17/18) for gates,
and item status update (19/20).

Layer: `sip2server`. Imports `ils` results and the codec; never Twisted.

A checkin answer routes the item: CV says why it needs attention (01 a hold
here, 02 a hold at another branch, 04 send it to another branch, 99 anything
else staff must see), CT where it goes, CY and DA whose hold it fills, and CL
the sort bin from the account's `sort_bin` rules (`sip2server.sortbins`).
"""

from __future__ import annotations

from datetime import datetime

from ils.models import ItemStatus
from ils.results import (
    CheckinAlert,
    CheckinResult,
    CirculationRefused,
    ItemView,
    Refusal,
)
from sip2server.answers.common import (
    Desk,
    Services,
    item_values,
    mask,
    media_type,
    patron_values,
    template_fields,
)
from sip2server.answers.loans import offline_time
from sip2server.protocol import (
    AlertType,
    CheckinRequest,
    CheckinResponse,
    CirculationStatus,
    FeeType,
    ItemInformationRequest,
    ItemInformationResponse,
    ItemStatusUpdateRequest,
    ItemStatusUpdateResponse,
    SecurityMarker,
    Tristate,
)

# The screen message for each kind of checkin that needs attention.
CHECKIN_MESSAGES = {
    CheckinAlert.HOLD_HERE: "Reserved for a patron: put it on the hold shelf here.",
    CheckinAlert.HOLD_TRANSIT: "Reserved for a patron at {to}: send it there.",
    CheckinAlert.TRANSIT_HOME: "This item belongs to {to}: send it there.",
    CheckinAlert.NOT_ON_LOAN: "This item was not on loan.",
    CheckinAlert.LOST_FOUND: "This item was recorded lost or missing; please give "
    "it to staff.",
}

# CV for each kind (SIP2 2.00 3M extension; Koha and Evergreen use the same).
_ALERT_TYPES = {
    CheckinAlert.HOLD_HERE: AlertType.HOLD_AT_THIS_LOCATION,
    CheckinAlert.HOLD_TRANSIT: AlertType.HOLD_FOR_OTHER_LOCATION,
    CheckinAlert.TRANSIT_HOME: AlertType.SEND_TO_OTHER_BRANCH,
    CheckinAlert.LOST_FOUND: AlertType.OTHER,
}

HOLD_BLOCKS_CHECKIN = "This item is wanted for a reservation; please give it to staff."

_STATUSES = {
    ItemStatus.AVAILABLE: CirculationStatus.AVAILABLE,
    ItemStatus.NOT_FOR_LOAN: CirculationStatus.AVAILABLE,
    ItemStatus.LOST: CirculationStatus.LOST,
    ItemStatus.MISSING: CirculationStatus.MISSING,
    ItemStatus.WITHDRAWN: CirculationStatus.OTHER,
    ItemStatus.DAMAGED: CirculationStatus.OTHER,
    ItemStatus.IN_PROCESSING: CirculationStatus.IN_PROCESS,
}


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def checkin_facts(result: CheckinResult) -> dict[str, str]:
    """What the sort-bin rules see of a checkin (`sip2server.sortbins.SORT_FIELDS`)."""
    item = result.item
    held = result.alert in (CheckinAlert.HOLD_HERE, CheckinAlert.HOLD_TRANSIT)
    destination = result.destination_branch_code or ""
    return {
        "branch": result.return_branch_code,
        "home_branch": result.home_branch_code or item.home_branch_code,
        "item_type": item.item_type_code,
        "media_type": item.media_type,
        "collection": item.collection or "",
        "location": item.location or "",
        "call_number": item.call_number or "",
        "hold": _yes(held),
        "pickup_branch": (item.hold_pickup_branch_code or "") if held else "",
        "transit": _yes(bool(destination)),
        "transit_to": destination,
        "alert": result.alert.value,
        "was_on_loan": _yes(result.was_on_loan),
    }


def predicted_facts(item: ItemView, branch: str) -> dict[str, str]:
    """The facts a checkin of `item` at `branch` would give, as far as they can be
    told without returning it (for `ils sort-bin`): a trapped item goes to its
    pickup branch, one with holds waiting is trapped here, another goes home."""
    trapped = item.hold_patron_barcode is not None
    pickup = item.hold_pickup_branch_code or ""
    if trapped:
        destination = "" if pickup == branch else pickup
        alert = (
            CheckinAlert.HOLD_HERE if pickup == branch else CheckinAlert.HOLD_TRANSIT
        )
    elif item.hold_queue_length > 0:
        # The first hold's pickup branch is not in the item's view.
        destination, alert = "", CheckinAlert.HOLD_HERE
        pickup = branch
    elif item.status in (ItemStatus.LOST, ItemStatus.MISSING):
        destination = "" if item.home_branch_code == branch else item.home_branch_code
        alert = CheckinAlert.LOST_FOUND
    elif item.home_branch_code != branch:
        destination, alert = item.home_branch_code, CheckinAlert.TRANSIT_HOME
    else:
        destination = ""
        alert = CheckinAlert.NONE if item.on_loan else CheckinAlert.NOT_ON_LOAN
    held = alert in (CheckinAlert.HOLD_HERE, CheckinAlert.HOLD_TRANSIT)
    return {
        "branch": branch,
        "home_branch": item.home_branch_code,
        "item_type": item.item_type_code,
        "media_type": item.media_type,
        "collection": item.collection or "",
        "location": item.location or "",
        "call_number": item.call_number or "",
        "hold": _yes(held),
        "pickup_branch": pickup if held else "",
        "transit": _yes(bool(destination)),
        "transit_to": destination,
        "alert": alert.value,
        "was_on_loan": _yes(item.on_loan),
    }


def _return_date(desk: Desk, given: datetime | None, no_block: bool) -> datetime | None:
    """The request's return date if the policy lets the terminal date returns
    that far back, else None (the core dates it now): `offline_return_days` for
    any return, and for one sent with no block (replayed from an offline
    journal) at least `offline_days`."""
    days = desk.policy.offline_return_days
    if no_block:
        days = max(days, desk.policy.offline_days)
    return offline_time(desk, given, days)


def checkin(services: Services, desk: Desk, request: CheckinRequest) -> CheckinResponse:
    """Return an item at the account's branch and route it."""
    policy = desk.policy
    institution = desk.institution(request.institution_id)
    barcode = request.item_identifier

    if policy.holds_block_checkin:
        seen = services.circulation.item(barcode)
        if seen is not None and (
            seen.hold_queue_length > 0 or seen.hold_patron_barcode is not None
        ):
            return checkin_refused(
                desk,
                institution,
                barcode,
                policy.screen_text("hold_blocks_checkin", HOLD_BLOCKS_CHECKIN),
                seen,
            )

    try:
        result = services.circulation.checkin(
            barcode,
            branch_code=desk.account.location,
            terminal=desk.account.login,
            returned_at=_return_date(desk, request.return_date, request.no_block),
        )
    except CirculationRefused as refusal:
        return checkin_refused(
            desk,
            institution,
            barcode,
            policy.screen_text(refusal.reason.value, refusal.message),
            refusal.item,
        )

    item = result.item
    destination = result.destination_branch_code
    alert_type = _ALERT_TYPES.get(result.alert)
    ok = True
    text = CHECKIN_MESSAGES.get(result.alert, "")
    if result.alert is CheckinAlert.NOT_ON_LOAN:
        text = policy.screen_text("checkin_not_on_loan", text)
        if not policy.checkin_not_on_loan_ok:
            ok, alert_type = False, AlertType.OTHER
    if alert_type is None and policy.cv_on_success_00:
        alert_type = AlertType.NONE
    text = text.format(to=destination or item.home_branch_code)

    if destination is None and policy.always_send_ct:
        destination = result.return_branch_code

    hold_patron = result.hold_patron_barcode
    hold_id = None
    hold_name = None
    if hold_patron is not None:
        if policy.hold_patron_id == "full":
            hold_id = hold_patron
        elif policy.hold_patron_id == "masked":
            hold_id = mask(hold_patron)
        if policy.name_template is not None:
            patron = services.circulation.patron(hold_patron)
            if patron is not None:
                hold_name = (
                    policy.name_template.render({"patron": patron_values(patron)})
                    or None
                )

    return CheckinResponse(
        ok=ok,
        resensitize=ok,
        magnetic_media=Tristate.UNKNOWN,
        alert=alert_type not in (None, AlertType.NONE),
        transaction_date=desk.now,
        institution_id=institution,
        item_identifier=item.barcode,
        permanent_location=item.home_branch_code,
        title_identifier=item.title,
        sort_bin=policy.sort_bins.bin_for(checkin_facts(result)),
        media_type=media_type(item.media_type),
        collection_code=item.collection,
        call_number=item.call_number,
        destination_location=destination,
        alert_type=alert_type,
        hold_patron_id=hold_id,
        hold_patron_name=hold_name,
        screen_message=(text,) if text else (),
        extra_fields=template_fields(policy.item_templates, "item", item_values(item)),
    )


def checkin_refused(
    desk: Desk,
    institution: str,
    barcode: str,
    text: str,
    item: ItemView | None = None,
) -> CheckinResponse:
    """A checkin that was not made: ok 0, alert, CV 99 (staff must look)."""
    return CheckinResponse(
        ok=False,
        resensitize=False,
        magnetic_media=Tristate.UNKNOWN,
        alert=True,
        transaction_date=desk.now,
        institution_id=institution,
        item_identifier=barcode,
        permanent_location="" if item is None else item.home_branch_code,
        title_identifier=None if item is None else item.title,
        alert_type=AlertType.OTHER,
        screen_message=(text,),
    )


def circulation_status(item: ItemView) -> CirculationStatus:
    """The item's circulation status as a gate needs it.

    Lost and missing first (an item lost on loan is lost), then charged, on
    the hold shelf, in transit, and otherwise by the item's status.
    """
    if item.status is ItemStatus.LOST:
        return CirculationStatus.LOST
    if item.status is ItemStatus.MISSING:
        return CirculationStatus.MISSING
    if item.on_loan:
        return CirculationStatus.CHARGED
    if item.on_hold_shelf:
        return CirculationStatus.WAITING_ON_HOLD_SHELF
    if item.in_transit_to is not None:
        return CirculationStatus.IN_TRANSIT
    return _STATUSES[item.status]


def item_information(
    services: Services, desk: Desk, request: ItemInformationRequest
) -> ItemInformationResponse:
    """One read of the item: what a gate needs to decide whether to alarm."""
    item = services.circulation.item(request.item_identifier)
    if item is None:
        return unknown_item(
            desk,
            request.item_identifier,
            desk.policy.screen_text(
                Refusal.UNKNOWN_ITEM.value, "This item is not recognised."
            ),
        )
    policy = desk.policy
    extra = template_fields(policy.item_templates, "item", item_values(item))
    if item.in_transit_to is not None:
        # No 2.00 field says where an item travels; CT (destination location,
        # the 3M extension of 10) is what sorters already read.
        extra = (("CT", item.in_transit_to), *extra)
    return ItemInformationResponse(
        circulation_status=circulation_status(item),
        security_marker=SecurityMarker(
            policy.security_marker_for(item.item_type_code, item.status.value)
        ),
        fee_type=FeeType.OTHER,
        transaction_date=desk.now,
        hold_queue_length=item.hold_queue_length,
        due_date=None if item.due_at is None else desk.due(item.due_at),
        hold_pickup_date=(
            None
            if item.hold_pickup_deadline is None
            else item.hold_pickup_deadline.astimezone(desk.zone).replace(tzinfo=None)
        ),
        item_identifier=item.barcode,
        title_identifier=item.title,
        owner=item.home_branch_code,
        currency_type=None,
        media_type=media_type(item.media_type),
        permanent_location=item.home_branch_code,
        current_location=item.current_branch_code,
        collection_code=item.collection,
        call_number=item.call_number,
        extra_fields=extra,
    )


def unknown_item(desk: Desk, barcode: str, text: str) -> ItemInformationResponse:
    """18 for a barcode the library does not know."""
    return ItemInformationResponse(
        circulation_status=CirculationStatus.OTHER,
        security_marker=SecurityMarker.OTHER,
        fee_type=FeeType.OTHER,
        transaction_date=desk.now,
        item_identifier=barcode,
        title_identifier="",
        screen_message=(text,),
    )


def item_status_update(
    services: Services, desk: Desk, request: ItemStatusUpdateRequest
) -> ItemStatusUpdateResponse:
    """Store the terminal's item properties (CH) on the item."""
    assert services.terminal_requests is not None
    try:
        stored = services.terminal_requests.store_item_properties(
            request.item_identifier,
            request.item_properties,
            terminal=desk.account.login,
        )
    except CirculationRefused as refusal:
        return ItemStatusUpdateResponse(
            item_properties_ok=False,
            transaction_date=desk.now,
            item_identifier=request.item_identifier,
            screen_message=(
                desk.policy.screen_text(refusal.reason.value, refusal.message),
            ),
        )
    item = services.circulation.item(request.item_identifier)
    return ItemStatusUpdateResponse(
        item_properties_ok=True,
        transaction_date=desk.now,
        item_identifier=request.item_identifier,
        title_identifier=None if item is None else item.title,
        item_properties=stored,
    )
