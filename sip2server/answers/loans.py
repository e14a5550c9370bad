"""Checkout (11/12), renew (29/30) and renew all (65/66).

Layer: `sip2server`. Imports `ils` results and services and the codec; never
Twisted.

Before the core is asked to lend, the account's policy may refuse: blocked item
types, items and patron categories for in-house use only, and patrons with a
lost or an overdue item on loan. Each refusal carries a screen message (which
the policy's `screen_messages` may reword) and is not recorded in the core's
log, since the core was never asked.

An 11 with no block Y is a terminal reporting a checkout it already made
offline. Under the policy's `no_block_checkouts = "record"` (the default) it is
recorded over those policies and the core's limits and blocks, dated by its
transaction date within the policy's `offline_days` (see `ils.checkout` for
what still refuses).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ils.patron_status import read_standing
from ils.results import CirculationRefused, Refusal
from sip2server.answers.common import (
    Desk,
    Services,
    item_values,
    media_type,
    patron_values,
    pin_refusal,
    template_fields,
)
from sip2server.protocol import (
    CheckoutRequest,
    CheckoutResponse,
    RenewAllRequest,
    RenewAllResponse,
    RenewRequest,
    RenewResponse,
    Tristate,
)

# The policy refusals' default screen messages, by their reason names.
POLICY_MESSAGES = {
    "item_type_blocked": "Items of this kind cannot be borrowed at this terminal; "
    "please ask staff.",
    "item_in_house_only": "This item is for use in the library only and cannot be "
    "taken out.",
    "patron_in_house_only": "This card is for use of items in the library only.",
    "lost_items_block_checkout": "Borrowing is blocked while an item on this card "
    "is recorded lost; please ask staff.",
    "overdues_block_checkout": "Please return your overdue items before borrowing "
    "more.",
}

# Refusals that say the patron's PIN was the problem: CQ N goes with them.
_PIN_REFUSALS = (Refusal.WRONG_PIN, Refusal.PIN_LOCKED, Refusal.PIN_REQUIRED)


def policy_refusal(
    services: Services, desk: Desk, patron_barcode: str, item_barcode: str
) -> tuple[str, dict[str, dict[str, str]]] | None:
    """The first of the account's checkout policies that refuses, by reason name,
    with the names of the patron and item read (for the screen message).

    Reads only what the policies set need: the item for item types, the patron
    for categories and overdues, the patron's standing for lost items.
    """
    policy = desk.policy
    values: dict[str, dict[str, str]] = {}
    if policy.blocked_item_types or policy.inhouse_item_types:
        item = services.circulation.item(item_barcode)
        if item is not None:
            values["item"] = item_values(item)
            if item.item_type_code in policy.blocked_item_types:
                return "item_type_blocked", values
            if item.item_type_code in policy.inhouse_item_types:
                return "item_in_house_only", values
    if policy.inhouse_patron_categories or policy.overdues_block_checkout:
        patron = services.circulation.patron(patron_barcode)
        if patron is not None:
            values["patron"] = patron_values(patron)
            if patron.category_code in policy.inhouse_patron_categories:
                return "patron_in_house_only", values
            if policy.overdues_block_checkout and patron.overdue_count > 0:
                return "overdues_block_checkout", values
    if policy.lost_items_block_checkout and services.database is not None:
        standing = read_standing(services.database, patron_barcode, desk.moment)
        if standing is not None and standing.conditions.too_many_items_lost:
            values["patron"] = patron_values(standing.patron)
            return "lost_items_block_checkout", values
    return None


def offline_time(desk: Desk, given: datetime | None, days: int) -> datetime | None:
    """A date a terminal gave for what it did offline, if it falls within the
    last `days` days (and not in the future), else None (dated on arrival).

    A date without a zone is the branch's local time, as SIP2 writes dates.
    """
    if not days or given is None:
        return None
    moment = given if given.tzinfo is not None else given.replace(tzinfo=desk.zone)
    if desk.moment - timedelta(days=days) <= moment <= desk.moment:
        return moment
    return None


def _local(given: datetime | None, desk: Desk) -> datetime | None:
    """A SIP2 date as an aware time (one without a zone is the branch's)."""
    if given is None or given.tzinfo is not None:
        return given
    return given.replace(tzinfo=desk.zone)


def checkout(
    services: Services, desk: Desk, request: CheckoutRequest
) -> CheckoutResponse:
    """Lend an item (or renew it, when the terminal's renewal policy says so);
    with no block Y, record one the terminal already lent offline."""
    institution = desk.institution(request.institution_id)
    policy = desk.policy
    # Recorded as an offline loan only with a date the policy believes: one it
    # would date "now" could otherwise end a loan made a moment ago.
    offline_at = (
        offline_time(desk, request.transaction_date, policy.offline_days)
        if request.no_block and policy.no_block_checkouts == "record"
        else None
    )
    offline = offline_at is not None
    refused = policy_refusal(
        services, desk, request.patron_identifier, request.item_identifier
    )
    waived: tuple[str, ...] = ()
    if refused is not None and offline:
        # The terminal lent it already: this account's own policy is noted in
        # the loan's log row, not enforced.
        waived, refused = (refused[0],), None
    if refused is not None:
        reason, values = refused
        return checkout_refused(
            desk,
            institution=institution,
            patron=request.patron_identifier,
            item=request.item_identifier,
            title="",
            text=policy.screen_text(reason, POLICY_MESSAGES[reason], values),
        )
    try:
        result = services.circulation.checkout(
            request.patron_identifier,
            request.item_identifier,
            branch_code=desk.account.location,
            pin=request.patron_password or None,
            pin_required=desk.account.patron_pin_required,
            terminal=desk.account.login,
            # SC renewal policy N: a repeated checkout (a kiosk retrying after a
            # lost reply) confirms the loan instead of renewing it.
            renew_if_on_loan=request.sc_renewal_policy,
            at=offline_at,
            offline=offline,
            offline_policy=waived,
            terminal_due_at=_local(request.nb_due_date, desk) if offline else None,
            account=False,
        )
    except CirculationRefused as refusal:
        return checkout_refused(
            desk,
            institution=institution,
            patron=request.patron_identifier,
            item=request.item_identifier,
            title="" if refusal.item is None else refusal.item.title,
            text=policy.screen_text(
                refusal.reason.value, refusal.message, refusal_values(refusal)
            ),
            pin_refused=refusal.reason in _PIN_REFUSALS,
        )

    due = result.due_at.astimezone(desk.zone)
    return CheckoutResponse(
        ok=True,
        renewal_ok=result.renewal,
        magnetic_media=Tristate.UNKNOWN,
        desensitize=Tristate.YES,
        transaction_date=desk.now,
        institution_id=institution,
        patron_identifier=request.patron_identifier,
        item_identifier=result.item.barcode,
        title_identifier=result.item.title,
        due_date=desk.due(result.due_at),
        media_type=media_type(result.item.media_type),
        screen_message=(
            f"{'Renewed' if result.renewal else 'Checked out'}"
            f"{' (recorded from offline)' if offline else ''}; due back "
            f"{due:%d %B %Y}.",
        ),
        extra_fields=template_fields(
            policy.item_templates, "item", item_values(result.item)
        ),
    )


def refusal_values(refusal: CirculationRefused) -> dict[str, dict[str, str]]:
    """The names of the patron and item a refusal knows, for its screen message."""
    values: dict[str, dict[str, str]] = {}
    if refusal.patron is not None:
        values["patron"] = patron_values(refusal.patron)
    if refusal.item is not None:
        values["item"] = item_values(refusal.item)
    return values


def checkout_refused(
    desk: Desk,
    *,
    institution: str,
    patron: str,
    item: str,
    title: str,
    text: str,
    pin_refused: bool = False,
) -> CheckoutResponse:
    """12 with ok 0; CQ N when the PIN was the reason (not a 12 field in the
    spec, but it tells the terminal why)."""
    return CheckoutResponse(
        ok=False,
        renewal_ok=False,
        magnetic_media=Tristate.UNKNOWN,
        desensitize=Tristate.NO,
        transaction_date=desk.now,
        institution_id=institution,
        patron_identifier=patron,
        item_identifier=item,
        title_identifier=title,
        due_date="",
        screen_message=(text,),
        extra_fields=(("CQ", "N"),) if pin_refused else (),
    )


def _loan_by_title(services: Services, patron: str, title: str) -> str | None:
    # A 29 may name the title (AJ) instead of the item: the patron's one loan
    # of that title, if there is exactly one.
    view = services.circulation.patron(patron)
    if view is None:
        return None
    wanted = title.strip().casefold()
    found = [
        loan.item_barcode for loan in view.loans if loan.title.casefold() == wanted
    ]
    return found[0] if len(found) == 1 else None


def renew(services: Services, desk: Desk, request: RenewRequest) -> RenewResponse:
    """Renew one loan, named by item (AB) or by title (AJ)."""
    institution = desk.institution(request.institution_id)
    policy = desk.policy
    if not request.patron_password:
        # The core checks a given PIN; one not given is refused here when the
        # account requires it (before AJ is looked for among the loans).
        missing = pin_refusal(services, desk, request.patron_identifier, "")
        if missing is not None:
            return renew_refused(
                desk,
                institution=institution,
                patron=request.patron_identifier,
                item=request.item_identifier or "",
                title=request.title_identifier or "",
                text=missing,
                pin_refused=True,
            )
    barcode = request.item_identifier
    if not barcode and request.title_identifier:
        barcode = _loan_by_title(
            services, request.patron_identifier, request.title_identifier
        )
    if not barcode:
        return renew_refused(
            desk,
            institution=institution,
            patron=request.patron_identifier,
            item=request.item_identifier or "",
            title=request.title_identifier or "",
            text=policy.screen_text(
                Refusal.ITEM_NOT_ON_LOAN.value,
                "Please scan the item you want to renew.",
            ),
        )
    try:
        result = services.circulation.renew(
            request.patron_identifier,
            barcode,
            pin=request.patron_password or None,
            terminal=desk.account.login,
            account=False,
        )
    except CirculationRefused as refusal:
        return renew_refused(
            desk,
            institution=institution,
            patron=request.patron_identifier,
            item=barcode,
            title="" if refusal.item is None else refusal.item.title,
            text=policy.screen_text(
                refusal.reason.value, refusal.message, refusal_values(refusal)
            ),
            pin_refused=refusal.reason in _PIN_REFUSALS,
        )
    due = result.due_at.astimezone(desk.zone)
    return RenewResponse(
        ok=True,
        renewal_ok=True,
        magnetic_media=Tristate.UNKNOWN,
        desensitize=Tristate.UNKNOWN,
        transaction_date=desk.now,
        institution_id=institution,
        patron_identifier=request.patron_identifier,
        item_identifier=result.item.barcode,
        title_identifier=result.item.title,
        due_date=desk.due(result.due_at),
        media_type=media_type(result.item.media_type),
        screen_message=(f"Renewed; due back {due:%d %B %Y}.",),
        extra_fields=template_fields(
            policy.item_templates, "item", item_values(result.item)
        ),
    )


def renew_refused(
    desk: Desk,
    *,
    institution: str,
    patron: str,
    item: str,
    title: str,
    text: str,
    pin_refused: bool = False,
) -> RenewResponse:
    """30 with ok 0 and renewal ok N."""
    return RenewResponse(
        ok=False,
        renewal_ok=False,
        magnetic_media=Tristate.UNKNOWN,
        desensitize=Tristate.UNKNOWN,
        transaction_date=desk.now,
        institution_id=institution,
        patron_identifier=patron,
        item_identifier=item,
        title_identifier=title,
        due_date="",
        screen_message=(text,),
        extra_fields=(("CQ", "N"),) if pin_refused else (),
    )


def renew_all(
    services: Services, desk: Desk, request: RenewAllRequest
) -> RenewAllResponse:
    """Renew every loan of the patron; BM lists the renewed, BN the others."""
    institution = desk.institution(request.institution_id)
    policy = desk.policy
    # The core checks the PIN per loan; with no loans it would never look.
    pin_refused = pin_refusal(
        services, desk, request.patron_identifier, request.patron_password or ""
    )
    if pin_refused is not None:
        return renew_all_refused(desk, institution, pin_refused)
    try:
        result = services.circulation.renew_all(
            request.patron_identifier,
            pin=request.patron_password or None,
            terminal=desk.account.login,
        )
    except CirculationRefused as refusal:
        return renew_all_refused(
            desk, institution, policy.screen_text(refusal.reason.value, refusal.message)
        )

    pin_problem = next((o for o in result.refused if o.refusal in _PIN_REFUSALS), None)
    if pin_problem is not None and pin_problem.refusal is not None:
        # A wrong or locked PIN refuses every loan alike: say so once.
        return renew_all_refused(
            desk,
            institution,
            policy.screen_text(
                pin_problem.refusal.value, pin_problem.message or "PIN refused."
            ),
        )

    renewed, refused = result.renewed, result.refused
    screen = [f"Renewed {len(renewed)} of {len(result.outcomes)} items."]
    screen += [
        f"{outcome.title}: "
        + policy.screen_text(
            outcome.refusal.value if outcome.refusal else "", outcome.message or ""
        )
        for outcome in refused
    ]
    return RenewAllResponse(
        ok=True,
        renewed_count=len(renewed),
        unrenewed_count=len(refused),
        transaction_date=desk.now,
        institution_id=institution,
        renewed_items=tuple(outcome.item_barcode for outcome in renewed),
        unrenewed_items=tuple(outcome.item_barcode for outcome in refused),
        screen_message=tuple(screen),
    )


def renew_all_refused(desk: Desk, institution: str, text: str) -> RenewAllResponse:
    """66 with ok 0 and nothing renewed."""
    return RenewAllResponse(
        ok=False,
        renewed_count=0,
        unrenewed_count=0,
        transaction_date=desk.now,
        institution_id=institution,
        screen_message=(text,),
    )
