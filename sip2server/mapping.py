"""From SIP2 requests to circulation calls, and from their results to responses.

Layer: `sip2server`. The only place where SIP2's codes and the core's domain
meet: the core's refusals become `ok=0`, a screen message and flags here, and
nowhere else. Runs in the server's worker threads; every call is synchronous.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from ils.circulation import Circulation
from ils.models import ItemStatus
from ils.results import CirculationRefused, ItemView, PatronView, Refusal
from ils.terminal_requests import TerminalRequests
from sip2server.config import AccountConfig
from sip2server.protocol import (
    AcsStatusResponse,
    AlertType,
    BlockPatronRequest,
    CheckinRequest,
    CheckinResponse,
    CheckoutRequest,
    CheckoutResponse,
    CirculationStatus,
    DueDateStyle,
    EndPatronSessionRequest,
    EndSessionResponse,
    FeeType,
    ItemInformationRequest,
    ItemInformationResponse,
    ItemStatusUpdateRequest,
    ItemStatusUpdateResponse,
    Language,
    MediaType,
    Message,
    PatronEnableRequest,
    PatronEnableResponse,
    PatronInformationRequest,
    PatronInformationResponse,
    PatronStatus,
    PatronStatusRequest,
    PatronStatusResponse,
    SecurityMarker,
    SupportedMessages,
    Tristate,
    write_due_date,
)

# What this server really answers; sent as BX in 98.
SUPPORTED = SupportedMessages(
    patron_status_request=True,
    checkout=True,
    checkin=True,
    sc_acs_status=True,
    request_sc_acs_resend=True,
    login=True,
    patron_information=True,
    end_patron_session=True,
    item_information=True,
)
# ... and these too when the mapping is given the core's terminal requests.
SUPPORTED_WITH_TERMINAL_REQUESTS = dataclasses.replace(
    SUPPORTED, block_patron=True, patron_enable=True, item_status_update=True
)

# 98's timeout period is in tenths of a second: how long a terminal should wait
# for a reply before it retries.
TIMEOUT_TENTHS = 100
RETRIES_ALLOWED = 3

_CIRCULATION_STATUS = {
    ItemStatus.AVAILABLE: CirculationStatus.AVAILABLE,
    ItemStatus.NOT_FOR_LOAN: CirculationStatus.AVAILABLE,
    ItemStatus.LOST: CirculationStatus.LOST,
    ItemStatus.MISSING: CirculationStatus.MISSING,
    ItemStatus.WITHDRAWN: CirculationStatus.OTHER,
    ItemStatus.DAMAGED: CirculationStatus.OTHER,
    ItemStatus.IN_PROCESSING: CirculationStatus.IN_PROCESS,
}


def due_date(moment: datetime, zone: ZoneInfo, style: DueDateStyle) -> str:
    """A due date (AH) in a branch's local time, in the account's style."""
    # TODO(#5): use this for AH of 30 too once the server answers renewals (29).
    return write_due_date(moment.astimezone(zone).replace(tzinfo=None), style)


def money(minor_units: int) -> str:
    """An amount in minor units as SIP2 writes it: 1250 -> "12.50"."""
    sign = "-" if minor_units < 0 else ""
    whole, cents = divmod(abs(minor_units), 100)
    return f"{sign}{whole}.{cents:02d}"


def _media_type(code: str) -> MediaType:
    try:
        return MediaType(code)
    except ValueError:
        return MediaType.OTHER


def _patron_status(patron: PatronView | None) -> PatronStatus:
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


def _patron_messages(patron: PatronView | None) -> tuple[str, ...]:
    if patron is None:
        return ("This library card is not recognised.",)
    if patron.card_lost:
        return ("This library card has been reported lost; please ask staff.",)
    if patron.expired:
        return ("This library card has expired; please ask staff.",)
    if patron.blocked:
        return ("Borrowing is blocked on this account; please ask staff.",)
    if patron.pin_valid is False:
        return ("The PIN does not match this library card.",)
    return ()


def _page(barcodes: list[str], start: int | None, end: int | None) -> tuple[str, ...]:
    # BP and BQ count from 1 and include both ends; either may be missing.
    first = max((start or 1) - 1, 0)
    last = end if end is not None and end >= first + 1 else len(barcodes)
    return tuple(barcodes[first:last])


class SipCirculation:
    """Answers SIP2 requests from a terminal by calling the circulation core."""

    def __init__(
        self,
        circulation: Circulation,
        *,
        branch_zones: Mapping[str, ZoneInfo],
        library_names: Mapping[str, str],
        terminal_requests: TerminalRequests | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._circulation = circulation
        self._terminal_requests = terminal_requests
        self._zones = dict(branch_zones)
        self._library_names = dict(library_names)
        self._clock = clock
        self._answers: dict[type[Message], Callable[[Any, AccountConfig], Message]] = {
            PatronStatusRequest: self._patron_status,
            PatronInformationRequest: self._patron_information,
            CheckoutRequest: self._checkout,
            CheckinRequest: self._checkin,
            ItemInformationRequest: self._item_information,
            EndPatronSessionRequest: self._end_session,
        }
        self._supported = SUPPORTED
        if terminal_requests is not None:
            self._answers |= {
                BlockPatronRequest: self._block_patron,
                PatronEnableRequest: self._patron_enable,
                ItemStatusUpdateRequest: self._item_status_update,
            }
            self._supported = SUPPORTED_WITH_TERMINAL_REQUESTS

    # -- what the session calls ------------------------------------------------

    def status(self, account: AccountConfig | None) -> AcsStatusResponse:
        """The ACS status (98), also for a terminal that has not logged in yet."""
        institution = "" if account is None else account.institution
        return AcsStatusResponse(
            online_status=True,
            checkin_ok=True,
            checkout_ok=True,
            acs_renewal_policy=True,
            status_update_ok=False,
            offline_ok=False,
            timeout_period=TIMEOUT_TENTHS,
            retries_allowed=RETRIES_ALLOWED,
            date_time_sync=self._local_now(account),
            institution_id=institution,
            supported_messages=self._supported,
            library_name=self._library_names.get(institution),
            terminal_location=None if account is None else account.location,
        )

    def answer(self, message: Message, account: AccountConfig) -> Message | None:
        """The response to a request, or None when this server does not support it."""
        answer = self._answers.get(type(message))
        return None if answer is None else answer(message, account)

    def refuse(
        self, message: Message, text: str, account: AccountConfig | None = None
    ) -> Message | None:
        """A well-formed negative response to `message` with `text` on screen.

        None when the message type has no answer here (the server sends 96).
        """
        return self.refuse_command(
            message.command,
            text,
            account=account,
            institution=getattr(message, "institution_id", "") or "",
            patron=getattr(message, "patron_identifier", "") or "",
            item=getattr(message, "item_identifier", "") or "",
            language=getattr(message, "language", Language.UNKNOWN),
        )

    def refuse_command(
        self,
        command: str,
        text: str,
        *,
        institution: str = "",
        patron: str = "",
        item: str = "",
        language: Language = Language.UNKNOWN,
        account: AccountConfig | None = None,
    ) -> Message | None:
        """A negative response to a request known only by its command code.

        Used too for a request that arrived whole but with a value that cannot
        be read: answering 96 would make the terminal send the same bad value
        again, so it is told why instead. None for a command with no answer here.
        """
        now = self._local_now(account)
        screen = (text,)
        if command == PatronStatusRequest.command:
            return self._patron_status_refused(
                institution, patron, language, now, screen
            )
        if command == PatronInformationRequest.command:
            return self._unknown_patron_information(
                language, institution, patron, now, screen
            )
        if command == CheckoutRequest.command:
            return self._checkout_refused(
                institution=institution,
                patron=patron,
                item=item,
                title="",
                now=now,
                screen=screen,
            )
        if command == CheckinRequest.command:
            return self._checkin_refused(institution, item, now, screen)
        if command == ItemInformationRequest.command:
            return self._unknown_item(item, now, screen)
        if command == BlockPatronRequest.command:
            return self._patron_status_refused(
                institution, patron, language, now, screen
            )
        if command == PatronEnableRequest.command:
            return PatronEnableResponse(
                patron_status=_patron_status(None),
                language=language,
                transaction_date=now,
                institution_id=institution,
                patron_identifier=patron,
                personal_name="",
                valid_patron=False,
                screen_message=screen,
            )
        if command == ItemStatusUpdateRequest.command:
            return ItemStatusUpdateResponse(
                item_properties_ok=False,
                transaction_date=now,
                item_identifier=item,
                screen_message=screen,
            )
        if command == EndPatronSessionRequest.command:
            return EndSessionResponse(
                end_session=False,
                transaction_date=now,
                institution_id=institution,
                patron_identifier=patron,
                screen_message=screen,
            )
        return None

    # -- one method per message ------------------------------------------------

    def _patron_status(
        self, request: PatronStatusRequest, account: AccountConfig
    ) -> PatronStatusResponse:
        patron = self._circulation.patron(
            request.patron_identifier, pin=request.patron_password or None
        )
        return PatronStatusResponse(
            patron_status=_patron_status(patron),
            language=request.language,
            transaction_date=self._local_now(account),
            institution_id=request.institution_id or account.institution,
            patron_identifier=request.patron_identifier,
            personal_name="" if patron is None else patron.full_name,
            valid_patron=patron is not None,
            valid_patron_password=None if patron is None else patron.pin_valid,
            currency_type=None if patron is None else patron.currency,
            fee_amount=None if patron is None else money(patron.fines_minor),
            screen_message=_patron_messages(patron),
        )

    def _patron_information(
        self, request: PatronInformationRequest, account: AccountConfig
    ) -> PatronInformationResponse:
        now = self._local_now(account)
        institution = request.institution_id or account.institution
        patron = self._circulation.patron(
            request.patron_identifier, pin=request.patron_password or None
        )
        if patron is None:
            return self._unknown_patron_information(
                request.language,
                institution,
                request.patron_identifier,
                now,
                _patron_messages(None),
            )

        if patron.pin_valid is False:
            # Whoever holds the card but not its PIN learns that the card is valid
            # and the PIN wrong, and nothing of the patron's account.
            withheld = self._unknown_patron_information(
                request.language,
                institution,
                request.patron_identifier,
                now,
                _patron_messages(patron),
            )
            return dataclasses.replace(
                withheld,
                patron_status=_patron_status(patron),
                valid_patron=True,
                valid_patron_password=False,
            )

        charged = [loan.item_barcode for loan in patron.loans]
        overdue = [loan.item_barcode for loan in patron.loans if loan.overdue]
        summary = request.summary
        start, end = request.start_item, request.end_item
        return PatronInformationResponse(
            patron_status=_patron_status(patron),
            language=request.language,
            transaction_date=now,
            hold_items_count=0,
            overdue_items_count=patron.overdue_count,
            charged_items_count=len(charged),
            fine_items_count=0,
            recall_items_count=0,
            unavailable_holds_count=0,
            institution_id=institution,
            patron_identifier=patron.barcode,
            personal_name=patron.full_name,
            charged_items_limit=patron.max_loans,
            valid_patron=True,
            valid_patron_password=patron.pin_valid,
            currency_type=patron.currency,
            fee_amount=money(patron.fines_minor),
            charged_items=_page(charged, start, end) if summary.charged_items else (),
            overdue_items=_page(overdue, start, end) if summary.overdue_items else (),
            email_address=patron.email,
            home_phone_number=patron.phone,
            patron_expiry=(
                None
                if patron.expires_on is None
                else patron.expires_on.strftime("%Y%m%d")
            ),
            patron_class=patron.category_code,
            screen_message=_patron_messages(patron),
        )

    def _checkout(
        self, request: CheckoutRequest, account: AccountConfig
    ) -> CheckoutResponse:
        now = self._local_now(account)
        institution = request.institution_id or account.institution
        try:
            result = self._circulation.checkout(
                request.patron_identifier,
                request.item_identifier,
                branch_code=account.location,
                pin=request.patron_password or None,
                pin_required=account.patron_pin_required,
                terminal=account.login,
                # SC renewal policy N: a repeated checkout (a kiosk retrying after
                # a lost reply) confirms the loan instead of renewing it.
                renew_if_on_loan=request.sc_renewal_policy,
            )
        except CirculationRefused as refusal:
            title = "" if refusal.item is None else refusal.item.title
            extra: tuple[tuple[str, str], ...] = ()
            if refusal.reason is Refusal.WRONG_PIN:
                # Not a 12 field in the spec, but it tells the terminal why.
                extra = (("CQ", "N"),)
            return self._checkout_refused(
                institution=institution,
                patron=request.patron_identifier,
                item=request.item_identifier,
                title=title,
                now=now,
                screen=(refusal.message,),
                extra=extra,
            )

        zone = self._zone(account)
        due = due_date(result.due_at, zone, account.due_date_format)
        return CheckoutResponse(
            ok=True,
            renewal_ok=result.renewal,
            magnetic_media=Tristate.UNKNOWN,
            desensitize=Tristate.YES,
            transaction_date=now,
            institution_id=institution,
            patron_identifier=request.patron_identifier,
            item_identifier=result.item.barcode,
            title_identifier=result.item.title,
            due_date=due,
            media_type=_media_type(result.item.media_type),
            screen_message=(
                f"{'Renewed' if result.renewal else 'Checked out'}; due back "
                f"{result.due_at.astimezone(zone):%d %B %Y}.",
            ),
        )

    def _checkin(
        self, request: CheckinRequest, account: AccountConfig
    ) -> CheckinResponse:
        now = self._local_now(account)
        institution = request.institution_id or account.institution
        try:
            # TODO(#4): honour the request's return date for offline returns
            # once the core decides how far back a terminal may date a return.
            result = self._circulation.checkin(
                request.item_identifier,
                branch_code=account.location,
                terminal=account.login,
            )
        except CirculationRefused as refusal:
            return self._checkin_refused(
                institution, request.item_identifier, now, (refusal.message,)
            )

        item = result.item
        elsewhere = item.home_branch_code != result.return_branch_code
        screen = () if result.was_on_loan else ("This item was not on loan.",)
        return CheckinResponse(
            ok=True,
            resensitize=True,
            magnetic_media=Tristate.UNKNOWN,
            alert=elsewhere,
            transaction_date=now,
            institution_id=institution,
            item_identifier=item.barcode,
            permanent_location=item.home_branch_code,
            title_identifier=item.title,
            media_type=_media_type(item.media_type),
            collection_code=item.collection,
            call_number=item.call_number,
            destination_location=item.home_branch_code if elsewhere else None,
            alert_type=AlertType.SEND_TO_OTHER_BRANCH if elsewhere else None,
            screen_message=screen,
        )

    def _item_information(
        self, request: ItemInformationRequest, account: AccountConfig
    ) -> ItemInformationResponse:
        now = self._local_now(account)
        item = self._circulation.item(request.item_identifier)
        if item is None:
            return self._unknown_item(
                request.item_identifier, now, ("This item is not recognised.",)
            )
        return self._item_response(
            item, now, self._zone(account), account.due_date_format
        )

    def _requests(self) -> TerminalRequests:
        # The three answers that use them are registered only when given them.
        if self._terminal_requests is None:  # pragma: no cover - see __init__
            raise RuntimeError("this mapping was built without terminal requests")
        return self._terminal_requests

    def _block_patron(
        self, request: BlockPatronRequest, account: AccountConfig
    ) -> PatronStatusResponse:
        # SIP2 answers a block with a patron status (24) showing the card blocked.
        now = self._local_now(account)
        institution = request.institution_id or account.institution
        try:
            self._requests().block_patron(
                request.patron_identifier,
                note=request.blocked_card_msg,
                terminal=account.login,
                card_retained=request.card_retained,
            )
        except CirculationRefused as refusal:
            return self._patron_status_refused(
                institution,
                request.patron_identifier,
                Language.UNKNOWN,
                now,
                (refusal.message,),
            )
        patron = self._circulation.patron(request.patron_identifier)
        return PatronStatusResponse(
            patron_status=_patron_status(patron),
            transaction_date=now,
            institution_id=institution,
            patron_identifier=request.patron_identifier,
            personal_name="" if patron is None else patron.full_name,
            valid_patron=patron is not None,
            screen_message=_patron_messages(patron),
        )

    def _patron_enable(
        self, request: PatronEnableRequest, account: AccountConfig
    ) -> PatronEnableResponse:
        now = self._local_now(account)
        institution = request.institution_id or account.institution
        patron = self._circulation.patron(
            request.patron_identifier, pin=request.patron_password or None
        )
        if patron is None or patron.pin_valid is False:
            # Nothing is lifted for an unknown card or a wrong PIN.
            return PatronEnableResponse(
                patron_status=_patron_status(patron),
                transaction_date=now,
                institution_id=institution,
                patron_identifier=request.patron_identifier,
                personal_name="",
                valid_patron=patron is not None,
                valid_patron_password=None if patron is None else False,
                screen_message=_patron_messages(patron),
            )

        enabled = self._requests().enable_patron(
            request.patron_identifier, terminal=account.login
        )
        pin_valid = patron.pin_valid
        patron = self._circulation.patron(request.patron_identifier) or patron
        screen = _patron_messages(patron)
        if enabled.still_blocked:
            screen = (*screen, "Only staff can lift the remaining block.")
        return PatronEnableResponse(
            patron_status=_patron_status(patron),
            transaction_date=now,
            institution_id=institution,
            patron_identifier=request.patron_identifier,
            personal_name=patron.full_name,
            valid_patron=True,
            valid_patron_password=pin_valid,
            screen_message=screen,
        )

    def _item_status_update(
        self, request: ItemStatusUpdateRequest, account: AccountConfig
    ) -> ItemStatusUpdateResponse:
        now = self._local_now(account)
        try:
            stored = self._requests().store_item_properties(
                request.item_identifier,
                request.item_properties,
                terminal=account.login,
            )
        except CirculationRefused as refusal:
            return ItemStatusUpdateResponse(
                item_properties_ok=False,
                transaction_date=now,
                item_identifier=request.item_identifier,
                screen_message=(refusal.message,),
            )
        item = self._circulation.item(request.item_identifier)
        return ItemStatusUpdateResponse(
            item_properties_ok=True,
            transaction_date=now,
            item_identifier=request.item_identifier,
            title_identifier=None if item is None else item.title,
            item_properties=stored,
        )

    def _patron_status_refused(
        self,
        institution: str,
        patron: str,
        language: Language,
        now: datetime,
        screen: tuple[str, ...],
    ) -> PatronStatusResponse:
        return PatronStatusResponse(
            patron_status=_patron_status(None),
            language=language,
            transaction_date=now,
            institution_id=institution,
            patron_identifier=patron,
            personal_name="",
            valid_patron=False,
            screen_message=screen,
        )

    def _end_session(
        self, request: EndPatronSessionRequest, account: AccountConfig
    ) -> EndSessionResponse:
        return EndSessionResponse(
            end_session=True,
            transaction_date=self._local_now(account),
            institution_id=request.institution_id or account.institution,
            patron_identifier=request.patron_identifier,
            screen_message=("Thank you.",),
        )

    # -- building blocks -------------------------------------------------------

    def _zone(self, account: AccountConfig | None) -> ZoneInfo:
        if account is None:
            return ZoneInfo("UTC")
        return self._zones.get(account.location, ZoneInfo("UTC"))

    def _local_now(self, account: AccountConfig | None) -> datetime:
        # SIP dates without a zone are the terminal's local time: the branch's.
        return self._clock().astimezone(self._zone(account)).replace(tzinfo=None)

    @staticmethod
    def _item_response(
        item: ItemView, now: datetime, zone: ZoneInfo, style: DueDateStyle
    ) -> ItemInformationResponse:
        status = (
            CirculationStatus.CHARGED
            if item.on_loan
            else _CIRCULATION_STATUS[item.status]
        )
        return ItemInformationResponse(
            circulation_status=status,
            # TODO(#5): the security marker per item type or site (tattle tape,
            # RFID) once the production server has per-account policy.
            security_marker=SecurityMarker.OTHER,
            fee_type=FeeType.OTHER,
            transaction_date=now,
            due_date=None
            if item.due_at is None
            else due_date(item.due_at, zone, style),
            item_identifier=item.barcode,
            title_identifier=item.title,
            owner=item.home_branch_code,
            media_type=_media_type(item.media_type),
            permanent_location=item.home_branch_code,
            current_location=item.current_branch_code,
            collection_code=item.collection,
            call_number=item.call_number,
        )

    @staticmethod
    def _unknown_item(
        barcode: str, now: datetime, screen: tuple[str, ...]
    ) -> ItemInformationResponse:
        return ItemInformationResponse(
            circulation_status=CirculationStatus.OTHER,
            security_marker=SecurityMarker.OTHER,
            fee_type=FeeType.OTHER,
            transaction_date=now,
            item_identifier=barcode,
            title_identifier="",
            screen_message=screen,
        )

    @staticmethod
    def _unknown_patron_information(
        language: Language,
        institution: str,
        patron: str,
        now: datetime,
        screen: tuple[str, ...],
    ) -> PatronInformationResponse:
        return PatronInformationResponse(
            patron_status=_patron_status(None),
            language=language,
            transaction_date=now,
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

    @staticmethod
    def _checkout_refused(
        *,
        institution: str,
        patron: str,
        item: str,
        title: str,
        now: datetime,
        screen: tuple[str, ...],
        extra: tuple[tuple[str, str], ...] = (),
    ) -> CheckoutResponse:
        return CheckoutResponse(
            ok=False,
            renewal_ok=False,
            magnetic_media=Tristate.UNKNOWN,
            desensitize=Tristate.NO,
            transaction_date=now,
            institution_id=institution,
            patron_identifier=patron,
            item_identifier=item,
            title_identifier=title,
            due_date="",
            screen_message=screen,
            extra_fields=extra,
        )

    @staticmethod
    def _checkin_refused(
        institution: str, item: str, now: datetime, screen: tuple[str, ...]
    ) -> CheckinResponse:
        return CheckinResponse(
            ok=False,
            resensitize=False,
            magnetic_media=Tristate.UNKNOWN,
            alert=True,
            transaction_date=now,
            institution_id=institution,
            item_identifier=item,
            permanent_location="",
            alert_type=AlertType.OTHER,
            screen_message=screen,
        )
