"""Patron status (23/24), patron information (63/64), block patron (01/24),
patron enable (25/26) and end patron session (35/36).

Layer: `sip2server`. Imports `ils` results and services and the codec; never
Twisted.

The 14 patron status flags come from the core's `PatronConditions`
(`ils.patron_status`), one to one. A patron information answer gives every
summary count and, for each summary position the terminal set to Y (not only
the first), that list, paged by BP/BQ. Without BP/BQ a list gets the
account's `default_list_items` entries; no list gets more than
`MOST_LIST_ITEMS`, and a 64 that would be longer than the server's
`max_frame_bytes` (`Desk.reply_bytes`, by default `REPLY_BYTES`) carries
fewer entries a list (the counts stay whole). It carries the limits the core
has for the patron (BZ, CA, CB, CC) and, with the unavailable holds (CD), this
server's extension HQ: the patron's place in each listed hold's queue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from ils.hold_views import queue_places
from ils.models import Branch, Institution, Patron
from ils.patron_status import PatronStanding, read_standing
from ils.results import CirculationRefused, HoldView, PatronView
from sip2server.answers.common import (
    Desk,
    Services,
    money,
    patron_messages,
    patron_status,
    patron_values,
    pin_refusal,
    status_of,
    template_fields,
)
from sip2server.protocol import (
    BlockPatronRequest,
    EndPatronSessionRequest,
    EndSessionResponse,
    FeeDetail,
    Language,
    PatronEnableRequest,
    PatronEnableResponse,
    PatronInformationRequest,
    PatronInformationResponse,
    PatronStatus,
    PatronStatusRequest,
    PatronStatusResponse,
    encode,
)
from sip2server.protocol.errors import LocalProtocolError


def _standing(
    services: Services,
    desk: Desk,
    barcode: str,
    first: int | None = None,
    last: int | None = None,
) -> PatronStanding | None:
    if services.database is None:
        return None
    return read_standing(
        services.database, barcode, desk.moment, first=first, last=last
    )


def _status(patron: PatronView | None, standing: PatronStanding | None) -> PatronStatus:
    return patron_status(patron) if standing is None else status_of(standing.conditions)


def _extra(desk: Desk, patron: PatronView | None) -> tuple[tuple[str, str], ...]:
    if patron is None:
        return ()
    return template_fields(
        desk.policy.patron_templates, "patron", patron_values(patron)
    )


def _currency(desk: Desk, patron: PatronView) -> str:
    return desk.policy.currency or patron.currency


def _pin_missing(services: Services, desk: Desk, pin: str | None) -> str | None:
    """The screen message for a request without AD from an account that requires
    the patron's PIN (`pin_refusal`'s), or None when the request may go on (a
    given PIN is checked by the answer itself, as before)."""
    return None if pin else pin_refusal(services, desk, "", "")


def patron_status_answer(
    services: Services, desk: Desk, request: PatronStatusRequest
) -> PatronStatusResponse:
    """24: the card's 14 status flags, whether it and its PIN are valid, fees."""
    patron = services.circulation.patron(
        request.patron_identifier,
        pin=request.patron_password or None,
        terminal=desk.account.login,
    )
    missing = _pin_missing(services, desk, request.patron_password)
    if missing is not None and patron is not None:
        # As for a wrong PIN: the card is valid, its PIN not given; nothing of
        # the account (name, fees) is told.
        return dataclasses.replace(
            patron_status_refused(
                desk,
                desk.institution(request.institution_id),
                request.patron_identifier,
                request.language,
                missing,
            ),
            patron_status=patron_status(patron),
            valid_patron=True,
            valid_patron_password=False,
        )
    standing = (
        None if patron is None else _standing(services, desk, request.patron_identifier)
    )
    return PatronStatusResponse(
        patron_status=_status(patron, standing),
        language=request.language,
        transaction_date=desk.now,
        institution_id=desk.institution(request.institution_id),
        patron_identifier=request.patron_identifier,
        personal_name="" if patron is None else patron.full_name,
        valid_patron=patron is not None,
        valid_patron_password=None if patron is None else patron.pin_valid,
        currency_type=None if patron is None else _currency(desk, patron),
        fee_amount=(
            None if patron is None else money(patron.fines_minor, patron.currency)
        ),
        screen_message=patron_messages(patron),
        extra_fields=_extra(desk, patron),
    )


def patron_status_refused(
    desk: Desk, institution: str, patron: str, language: Language, text: str
) -> PatronStatusResponse:
    """24 for a card that is unknown or could not be looked at."""
    return PatronStatusResponse(
        patron_status=patron_status(None),
        language=language,
        transaction_date=desk.now,
        institution_id=institution,
        patron_identifier=patron,
        personal_name="",
        valid_patron=False,
        screen_message=(text,),
    )


def unknown_patron_information(
    desk: Desk,
    language: Language,
    institution: str,
    patron: str,
    screen: tuple[str, ...],
) -> PatronInformationResponse:
    """64 with nothing of any account in it."""
    return PatronInformationResponse(
        patron_status=patron_status(None),
        language=language,
        transaction_date=desk.now,
        hold_items_count=0,
        overdue_items_count=0,
        charged_items_count=0,
        fine_items_count=0,
        recall_items_count=0,
        unavailable_holds_count=0,
        institution_id=institution,
        patron_identifier=patron,
        personal_name="",
        valid_patron=False,
        screen_message=screen,
    )


def _hold_entry(hold: HoldView) -> str:
    # What a kiosk lists for a hold: the item waiting, or the title asked for.
    return hold.trapped_item_barcode or hold.item_barcode or hold.title


#: This server's extension field of 64 (docs/sip2-conformance.md, "Hold queue
#: places in 64"): one per hold of CD still in its queue, in CD's order, as
#: "<position>/<queue length> <the hold's CD entry>", e.g. "2/3 Salt Roads".
QUEUE_PLACE = "HQ"

# The most a four-digit limit (BZ, CA, CB) can say.
_MOST = 9999


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Limits:
    """The institution's limits for a patron (None: the core has none)."""

    max_holds: int | None
    overdue_limit: int | None
    fee_limit_minor: int | None


def _four_digits(limit: int | None) -> int | None:
    return None if limit is None else min(max(limit, 0), _MOST)


def _account_extras(
    services: Services,
    desk: Desk,
    barcode: str,
    pending: Sequence[HoldView],
) -> tuple[_Limits | None, tuple[tuple[str, str] | None, ...]]:
    """The patron's institution limits and, for each hold of `pending` (the CD
    page being sent) in its order, its HQ field (None: no place in a queue), in
    one read unit: one statement each."""
    if services.database is None:  # pragma: no cover - every server has one
        return None, ()
    wanted = bool(pending) and not (
        desk.policy.hides(QUEUE_PLACE, required=False)
        or desk.policy.hides("CD", required=False)
    )
    with services.database.read() as session:
        row = session.execute(
            sa.select(
                Institution.max_holds,
                Institution.overdue_limit,
                Institution.fee_limit_minor,
            )
            .join(Branch, Branch.institution_id == Institution.id)
            .join(Patron, Patron.home_branch_id == Branch.id)
            .where(Patron.barcode == barcode)
        ).first()
        places = queue_places(session, barcode) if wanted else {}
    limits = (
        None
        if row is None
        else _Limits(max_holds=row[0], overdue_limit=row[1], fee_limit_minor=row[2])
    )
    fields = tuple(
        None
        if (place := places.get(hold.hold_id)) is None
        else (QUEUE_PLACE, f"{place.position}/{place.length} {_hold_entry(hold)}")
        for hold in pending
    )
    return limits, fields


#: The most entries of one list a 64 carries, however many BP/BQ ask for.
MOST_LIST_ITEMS = 1000

#: The longest 64 this server sends with lists in it when not told otherwise,
#: in bytes on the wire with error detection: the server's default
#: `max_frame_bytes` (what it reads itself), which terminals also read. The
#: server passes its configured `max_frame_bytes` as `Desk.reply_bytes`; a 64
#: that would be longer carries fewer entries a list, the same number in each,
#: as many as fit, measured in the account's encoding.
REPLY_BYTES = 8192


def list_range(default: int, start: int | None, end: int | None) -> tuple[int, int]:
    """The entries (from 1, both ends included) each list of a 64 gets: BP to
    BQ as given; `default` entries (the account's `default_list_items`) from BP,
    or from 1, when BQ is not given; never more than `MOST_LIST_ITEMS`. A BQ
    before BP asks for nothing, as before."""
    first = max(start or 1, 1)
    last = first + default - 1 if end is None else end
    return first, min(last, first + MOST_LIST_ITEMS - 1)


def _frame_bytes(response: PatronInformationResponse, desk: Desk) -> int | None:
    """How long `response` is on the wire (in the account's encoding, with AY
    and AZ); None when it cannot be encoded (the sending side then reports
    why)."""
    account = desk.account
    try:
        return len(
            encode(
                response,
                sequence=0,
                error_detection=True,
                encoding=account.encoding,
                delimiter_policy=account.delimiter_in_value,
                field_order=account.field_order,
            )
        )
    except (LocalProtocolError, LookupError):
        return None


def _fitted(
    build: Callable[[int | None], PatronInformationResponse],
    longest: int,
    desk: Desk,
) -> PatronInformationResponse:
    """The response `build` makes with every list whole (None) if it fits in
    `desk.reply_bytes`; else with the most entries a list (below `longest`)
    that fit, found by halving; with none if even that is too long."""
    limit = desk.reply_bytes
    whole = build(None)
    size = _frame_bytes(whole, desk)
    if size is None or size <= limit or longest == 0:
        return whole
    fits, too_many = 0, longest
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        length = _frame_bytes(build(middle), desk)
        if length is not None and length <= limit:
            fits = middle
        else:
            too_many = middle
    return build(fits)


def patron_information(
    services: Services, desk: Desk, request: PatronInformationRequest
) -> PatronInformationResponse:
    """64: the account with every count, and the lists the summary asks for."""
    institution = desk.institution(request.institution_id)
    # The PIN first, so that a PIN this request locks shows as locked; then the
    # whole account in one read (its view is the standing's own).
    pin = request.patron_password or None
    pin_valid = (
        None
        if pin is None
        else services.circulation.pin_matches(
            request.patron_identifier, pin, terminal=desk.account.login
        )
    )
    first, last = list_range(
        desk.policy.default_list_items, request.start_item, request.end_item
    )
    standing = _standing(services, desk, request.patron_identifier, first, last)
    if standing is None:
        return unknown_patron_information(
            desk,
            request.language,
            institution,
            request.patron_identifier,
            patron_messages(None),
        )
    patron = dataclasses.replace(standing.patron, pin_valid=pin_valid)
    missing = _pin_missing(services, desk, pin)
    if patron.pin_valid is False or missing is not None:
        # Whoever holds the card but not its PIN learns that the card is valid
        # and the PIN wrong, locked or (where one is required) not given, and
        # nothing of the patron's account.
        withheld = unknown_patron_information(
            desk,
            request.language,
            institution,
            request.patron_identifier,
            patron_messages(patron) if missing is None else (missing,),
        )
        return dataclasses.replace(
            withheld,
            patron_status=patron_status(patron),
            valid_patron=True,
            valid_patron_password=False,
        )

    summary = request.summary
    unavailable = standing.holds_unavailable if summary.unavailable_holds else ()
    limits, queue_places = _account_extras(services, desk, patron.barcode, unavailable)
    # A limit is the count (or amount) at which the matching status flag is
    # set, as the core decides it; the institution's 0 ("any at all") is 1.
    overdue_limit = None if limits is None else limits.overdue_limit
    fee_limit = None if limits is None else limits.fee_limit_minor
    hold_items = standing.holds_available if summary.hold_items else ()
    overdue = standing.overdue if summary.overdue_items else ()
    charged = standing.charged if summary.charged_items else ()
    fees = standing.fees if summary.fine_items else ()
    recalls = standing.recalls if summary.recall_items else ()
    details = standing.fees if summary.extended_fees else ()
    longest = max(
        map(len, (hold_items, overdue, charged, fees, recalls, unavailable, details))
    )

    def build(most: int | None) -> PatronInformationResponse:
        # Every list cut to its first `most` entries (None: as paged).
        cut = slice(most)
        queue_fields = tuple(f for f in queue_places[cut] if f is not None)
        return PatronInformationResponse(
            patron_status=status_of(standing.conditions),
            language=request.language,
            transaction_date=desk.now,
            hold_items_count=standing.holds_available_count,
            overdue_items_count=standing.overdue_count,
            charged_items_count=standing.charged_count,
            fine_items_count=standing.fees_count,
            recall_items_count=standing.recalls_count,
            unavailable_holds_count=standing.holds_unavailable_count,
            institution_id=institution,
            patron_identifier=patron.barcode,
            personal_name=patron.full_name,
            hold_items_limit=_four_digits(None if limits is None else limits.max_holds),
            overdue_items_limit=_four_digits(
                None if overdue_limit is None else max(overdue_limit, 1)
            ),
            charged_items_limit=_four_digits(standing.patron.max_loans),
            valid_patron=True,
            valid_patron_password=patron.pin_valid,
            currency_type=_currency(desk, patron),
            fee_amount=money(standing.fines_minor, standing.currency),
            fee_limit=(
                None
                if fee_limit is None
                else money(max(fee_limit, 1), standing.currency)
            ),
            hold_items=tuple(_hold_entry(h) for h in hold_items[cut]),
            overdue_items=tuple(loan.item_barcode for loan in overdue[cut]),
            charged_items=tuple(loan.item_barcode for loan in charged[cut]),
            fine_items=tuple(
                f"{fee.id} {money(fee.balance_minor, fee.currency)} {fee.description}"
                for fee in fees[cut]
            ),
            recall_items=tuple(loan.item_barcode for loan in recalls[cut]),
            unavailable_hold_items=tuple(_hold_entry(h) for h in unavailable[cut]),
            email_address=patron.email,
            home_phone_number=patron.phone,
            patron_expiry=(
                None
                if patron.expires_on is None
                else patron.expires_on.strftime("%Y%m%d")
            ),
            patron_class=patron.category_code,
            screen_message=patron_messages(patron),
            fee_details=tuple(
                FeeDetail(
                    fee_remaining=money(fee.balance_minor, fee.currency),
                    item_barcode=fee.item_barcode,
                    creation_date=fee.created_at.astimezone(desk.zone).date(),
                    title=fee.title,
                    fee_identifier=str(fee.id),
                    fee_type=fee.kind.value,
                    fee_paid=money(fee.amount_minor - fee.balance_minor, fee.currency),
                )
                for fee in details[cut]
            ),
            extra_fields=(*_extra(desk, patron), *queue_fields),
        )

    return _fitted(build, longest, desk)


def block_patron(
    services: Services, desk: Desk, request: BlockPatronRequest
) -> PatronStatusResponse:
    """Block the card (recorded with the terminal's AL); SIP2 answers with 24."""
    assert services.terminal_requests is not None
    institution = desk.institution(request.institution_id)
    try:
        services.terminal_requests.block_patron(
            request.patron_identifier,
            note=request.blocked_card_msg,
            terminal=desk.account.login,
            card_retained=request.card_retained,
        )
    except CirculationRefused as refusal:
        return patron_status_refused(
            desk,
            institution,
            request.patron_identifier,
            Language.UNKNOWN,
            desk.policy.screen_text(refusal.reason.value, refusal.message),
        )
    patron = services.circulation.patron(request.patron_identifier)
    standing = _standing(services, desk, request.patron_identifier)
    return PatronStatusResponse(
        patron_status=_status(patron, standing),
        transaction_date=desk.now,
        institution_id=institution,
        patron_identifier=request.patron_identifier,
        personal_name="" if patron is None else patron.full_name,
        valid_patron=patron is not None,
        screen_message=patron_messages(patron),
        extra_fields=_extra(desk, patron),
    )


def patron_enable(
    services: Services, desk: Desk, request: PatronEnableRequest
) -> PatronEnableResponse:
    """Lift the blocks terminals placed (staff blocks stay); answered with 26."""
    assert services.terminal_requests is not None
    institution = desk.institution(request.institution_id)
    patron = services.circulation.patron(
        request.patron_identifier,
        pin=request.patron_password or None,
        terminal=desk.account.login,
    )
    missing = _pin_missing(services, desk, request.patron_password)
    if patron is None or patron.pin_valid is False or missing is not None:
        # Nothing is lifted for an unknown card, a wrong PIN, or no PIN where
        # the account requires one.
        return PatronEnableResponse(
            patron_status=patron_status(patron),
            transaction_date=desk.now,
            institution_id=institution,
            patron_identifier=request.patron_identifier,
            personal_name="",
            valid_patron=patron is not None,
            valid_patron_password=None if patron is None else False,
            screen_message=(
                (missing,)
                if missing is not None and patron is not None
                else patron_messages(patron)
            ),
        )

    enabled = services.terminal_requests.enable_patron(
        request.patron_identifier, terminal=desk.account.login
    )
    pin_valid = patron.pin_valid
    patron = services.circulation.patron(request.patron_identifier) or patron
    standing = _standing(services, desk, request.patron_identifier)
    screen = patron_messages(patron)
    if enabled.still_blocked:
        screen = (*screen, "Only staff can lift the remaining block.")
    return PatronEnableResponse(
        patron_status=_status(patron, standing),
        transaction_date=desk.now,
        institution_id=institution,
        patron_identifier=request.patron_identifier,
        personal_name=patron.full_name,
        valid_patron=True,
        valid_patron_password=pin_valid,
        screen_message=screen,
        extra_fields=_extra(desk, patron),
    )


def end_session(
    services: Services, desk: Desk, request: EndPatronSessionRequest
) -> EndSessionResponse:
    """36: the patron's session at the terminal is over."""
    return EndSessionResponse(
        end_session=True,
        transaction_date=desk.now,
        institution_id=desk.institution(request.institution_id),
        patron_identifier=request.patron_identifier,
        screen_message=("Thank you.",),
    )
