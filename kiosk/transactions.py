"""What the kiosk asks the server, and what the answers mean for a patron.

Layer: `kiosk`, plain Python over the SIP2 link (no Kivy, never `ils`). Builds
SIP2 requests with the codec's message values, turns replies into outcomes
that name a `Refusal` instead of a code, and, when the server is out of reach
and the policy allows, writes returns and checkouts to the offline journal and
replays them later in order, with their real time.

The outcome values and reply readers live in kiosk/outcomes.py, the journal's
replay in kiosk/journal_replay.py; their names stay importable from here.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from twisted.internet import defer
from twisted.logger import Logger

from sip2server.protocol import (
    CheckinRequest,
    CheckinResponse,
    CheckoutRequest,
    CheckoutResponse,
    EndPatronSessionRequest,
    ItemInformationRequest,
    ItemInformationResponse,
    Message,
    PatronInformationRequest,
    PatronInformationResponse,
    RenewRequest,
    RenewResponse,
    Summary,
    Tristate,
)

from .config import KioskConfig
from .journal import EntryKind, Journal, JournalError
from .journal_replay import JournalReplay
from .outcomes import (
    QUEUE_PLACE_FIELD,
    Account,
    Action,
    Hold,
    Identified,
    ItemOutcome,
    Loan,
    Patron,
    QueuePlace,
    Result,
    ReturnNote,
    _screen,
    parse_due,
    queue_places,
    take_place,
)
from .sipclient import LinkState, SipLinkError, UnsupportedRequestError
from .wording import Refusal, Wording, item_refusal, patron_refusal

log = Logger()

# The names moved to kiosk/outcomes.py and kiosk/journal_replay.py stay
# importable here.
__all__ = [
    "QUEUE_PLACE_FIELD",
    "Account",
    "Action",
    "Hold",
    "Identified",
    "ItemOutcome",
    "JournalReplay",
    "Link",
    "Loan",
    "Patron",
    "QueuePlace",
    "Result",
    "ReturnNote",
    "SipDesk",
    "parse_due",
    "queue_places",
    "take_place",
]


class Link(Protocol):
    """What the desk needs of the SIP2 link (`SipLink` in the kiosk)."""

    state: LinkState

    async def request(self, message: Message) -> Message: ...

    async def settled(self) -> None: ...


def _local(moment: datetime) -> datetime:
    # SIP2 dates carry no zone: they are the terminal's local time.
    return moment.astimezone().replace(tzinfo=None)


class SipDesk(JournalReplay):
    """The kiosk's circulation desk: every patron transaction, online or off."""

    def __init__(
        self,
        config: KioskConfig,
        link: Link,
        wording: Wording,
        journal: Journal | None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    ) -> None:
        self._config = config
        self._link = link
        self._wording = wording
        self.journal = journal
        self._now = now
        self._institution = config.kiosk.institution
        self._terminal_password = config.account.terminal_password or None
        self._replaying = False
        self._replay_waiters: list[defer.Deferred[None]] = []
        #: Why the journal could not be written (the kiosk then cannot serve
        #: offline); None while it works. Cleared when staff replay.
        self.journal_problem: str | None = None

    @property
    def offline_ready(self) -> bool:
        """Whether offline transactions can be journaled now."""
        return self.journal is not None and self.journal_problem is None

    def _journal_failed(
        self, action: Action, item: str, error: Exception
    ) -> ItemOutcome:
        self.journal_problem = str(error)
        log.error(
            "offline journal failed; {action} not recorded: {error}",
            action=action.value,
            error=error,
        )
        return self._refused(action, item, Refusal.NOT_RECORDED)

    @property
    def online(self) -> bool:
        """Whether the server can be asked right now."""
        return self._link.state is LinkState.ONLINE

    # -- patrons ---------------------------------------------------------------

    async def identify(self, barcode: str, pin: str | None) -> Identified:
        """Look the patron up (63 with their loans), checking the PIN if given."""
        await self._link.settled()
        await self._after_replay()
        if not self.online:
            return self._identify_offline(barcode)
        try:
            reply = await self._link.request(
                self._patron_information(barcode, pin, Summary(charged_items=True))
            )
        except SipLinkError as problem:
            if problem.sent:
                # Asked, and no usable answer (a lost reply, or one that does
                # not match): the card and PIN are unchecked, never taken at
                # their word as an offline patron. The patron tries again.
                return Identified(patron=None, refusal=Refusal.SERVER_UNREACHABLE)
            return self._identify_offline(barcode)
        if not isinstance(reply, PatronInformationResponse):
            return Identified(patron=None, refusal=Refusal.OTHER)
        screen = _screen(reply)
        valid_pin = reply.valid_patron_password
        if pin is not None and valid_pin is None:
            # SIP2 makes CQ optional; a PIN sent and not said to be right is
            # not taken as right.
            valid_pin = False
        refusal = patron_refusal(
            valid_patron=reply.valid_patron,
            valid_pin=valid_pin,
            status=reply.patron_status,
            screen_message=screen,
            wording=self._wording,
        )
        if refusal in {
            Refusal.CARD_NOT_RECOGNISED,
            Refusal.PIN_WRONG,
            Refusal.PIN_TRIES_EXHAUSTED,
        }:
            return Identified(patron=None, refusal=refusal, screen_message=screen)
        return Identified(
            patron=Patron(
                barcode=barcode,
                pin=pin,
                name=reply.personal_name,
                borrow_refusal=refusal,
                screen_message=screen,
                email=reply.email_address,
                loans=frozenset(reply.charged_items),
            )
        )

    def _identify_offline(self, barcode: str) -> Identified:
        offline = self._config.offline
        if not (self.journal is not None and offline.enabled and offline.checkouts):
            return Identified(patron=None, refusal=Refusal.SERVER_UNREACHABLE)
        # Nothing can be checked: the card is taken at its word, within limits.
        # TODO(#6): check offline cards against a downloaded block list.
        return Identified(
            patron=Patron(
                barcode=barcode,
                pin=None,
                name="",
                borrow_refusal=None,
                screen_message="",
                email=None,
                loans=frozenset(),
                offline=True,
            )
        )

    def _patron_information(
        self, barcode: str, pin: str | None, summary: Summary
    ) -> PatronInformationRequest:
        return PatronInformationRequest(
            transaction_date=_local(self._now()),
            summary=summary,
            institution_id=self._institution,
            patron_identifier=barcode,
            terminal_password=self._terminal_password,
            patron_password=pin,
            start_item=1,
            end_item=50,
        )

    async def account(self, patron: Patron) -> Account:
        """Loans with titles and due dates, holds ready apart from pending, fees.

        Raises:
            SipLinkError: the server could not be asked.
        """
        loans_reply = await self._info(patron, Summary(charged_items=True))
        overdue_reply = await self._info(patron, Summary(overdue_items=True))
        ready_reply = await self._info(patron, Summary(hold_items=True))
        pending_reply = await self._info(patron, Summary(unavailable_holds=True))
        fees_reply = await self._info(
            patron, Summary(fine_items=True, extended_fees=True)
        )
        overdue = set(overdue_reply.overdue_items)

        loans = []
        for barcode in loans_reply.charged_items:
            item = await self._item(barcode)
            loans.append(
                Loan(
                    barcode=barcode,
                    title=item.title_identifier if item else "",
                    due=parse_due(item.due_date) if item else None,
                    overdue=barcode in overdue,
                )
            )
        holds = []
        # Our server says where the patron stands in each queue (HQ); with
        # another server, the item's queue length (CF) is all there is.
        places = queue_places(pending_reply)
        for ready, barcodes in (
            (True, ready_reply.hold_items),
            (False, pending_reply.unavailable_hold_items),
        ):
            for barcode in barcodes:
                item = await self._item(barcode)
                place = None if ready else take_place(barcode, places)
                length = item.hold_queue_length if item else None
                holds.append(
                    Hold(
                        barcode=barcode,
                        # A hold on a title is listed by its title, which no
                        # item has as barcode (18 gives an empty AJ for it).
                        title=(item.title_identifier if item else "") or barcode,
                        ready=ready,
                        queue_length=length if place is None else place.length,
                        queue_position=None if place is None else place.position,
                    )
                )
        return Account(
            loans=tuple(loans),
            holds_ready=tuple(h for h in holds if h.ready),
            holds_pending=tuple(h for h in holds if not h.ready),
            fee_total=fees_reply.fee_amount or "0.00",
            currency=fees_reply.currency_type or "",
            fees=fees_reply.fee_details,
        )

    async def _info(
        self, patron: Patron, summary: Summary
    ) -> PatronInformationResponse:
        reply = await self._link.request(
            self._patron_information(patron.barcode, patron.pin, summary)
        )
        if not isinstance(reply, PatronInformationResponse):
            raise SipLinkError(f"answered 63 with {reply.command}", sent=True)
        return reply

    async def _item(self, barcode: str) -> ItemInformationResponse | None:
        reply = await self._link.request(
            ItemInformationRequest(
                transaction_date=_local(self._now()),
                institution_id=self._institution,
                item_identifier=barcode,
                terminal_password=self._terminal_password,
            )
        )
        return reply if isinstance(reply, ItemInformationResponse) else None

    async def end_session(self, patron: Patron) -> None:
        """Tell the server the patron has finished (35); failures do not matter."""
        if patron.offline or not self.online:
            return
        with contextlib.suppress(SipLinkError):
            await self._link.request(
                EndPatronSessionRequest(
                    transaction_date=_local(self._now()),
                    institution_id=self._institution,
                    patron_identifier=patron.barcode,
                    terminal_password=self._terminal_password,
                    patron_password=patron.pin,
                )
            )

    # -- items -----------------------------------------------------------------

    async def borrow(self, patron: Patron, item: str) -> ItemOutcome:
        """Check an item out (11), or offer renewal when it is already theirs."""
        await self._link.settled()
        await self._after_replay()
        if item in patron.loans:
            title = ""
            if self.online:
                with contextlib.suppress(SipLinkError):
                    found = await self._item(item)
                    title = found.title_identifier if found else ""
            return ItemOutcome(
                action=Action.BORROW,
                barcode=item,
                result=Result.OFFER_RENEW,
                title=title,
            )
        if patron.offline or not self.online:
            return self._borrow_offline(patron, item)
        request = CheckoutRequest(
            # N: a checkout of an item this patron already has must not renew it
            # silently; the kiosk offers the renewal itself.
            sc_renewal_policy=False,
            no_block=False,
            transaction_date=_local(self._now()),
            institution_id=self._institution,
            patron_identifier=patron.barcode,
            item_identifier=item,
            terminal_password=self._terminal_password,
            patron_password=patron.pin,
        )
        try:
            reply = await self._link.request(request)
        except SipLinkError as problem:
            if not problem.sent:
                return self._borrow_offline(patron, item)
            return self._refused(Action.BORROW, item, Refusal.SERVER_UNREACHABLE)
        if not isinstance(reply, CheckoutResponse):
            return self._refused(Action.BORROW, item, Refusal.OTHER)
        return self._loan_outcome(Action.BORROW, item, reply)

    def _borrow_offline(self, patron: Patron, item: str) -> ItemOutcome:
        offline = self._config.offline
        if not self.offline_ready or not (offline.enabled and offline.checkouts):
            return self._refused(Action.BORROW, item, Refusal.SERVER_UNREACHABLE)
        assert self.journal is not None
        try:
            if (
                self.journal.checkouts_for(patron.barcode)
                >= offline.max_checkouts_per_patron
            ):
                return self._refused(Action.BORROW, item, Refusal.OFFLINE_LIMIT)
            self.journal.record(
                EntryKind.CHECKOUT, item=item, patron=patron.barcode, at=self._now()
            )
        except (JournalError, sqlite3.Error) as error:
            return self._journal_failed(Action.BORROW, item, error)
        return ItemOutcome(action=Action.BORROW, barcode=item, result=Result.QUEUED)

    async def renew(self, patron: Patron, item: str) -> ItemOutcome:
        """Renew one loan (29); a server that does not renew is said so plainly."""
        await self._link.settled()
        await self._after_replay()
        if patron.offline or not self.online:
            return self._refused(Action.RENEW, item, Refusal.SERVER_UNREACHABLE)
        request = RenewRequest(
            third_party_allowed=False,
            no_block=False,
            transaction_date=_local(self._now()),
            institution_id=self._institution,
            patron_identifier=patron.barcode,
            patron_password=patron.pin,
            item_identifier=item,
            terminal_password=self._terminal_password,
        )
        try:
            reply = await self._link.request(request)
        except UnsupportedRequestError:
            return self._refused(Action.RENEW, item, Refusal.RENEWAL_UNAVAILABLE)
        except SipLinkError:
            return self._refused(Action.RENEW, item, Refusal.SERVER_UNREACHABLE)
        if not isinstance(reply, RenewResponse):
            return self._refused(Action.RENEW, item, Refusal.OTHER)
        return self._loan_outcome(Action.RENEW, item, reply)

    def _loan_outcome(
        self, action: Action, item: str, reply: CheckoutResponse | RenewResponse
    ) -> ItemOutcome:
        screen = _screen(reply)
        if reply.ok:
            return ItemOutcome(
                action=action,
                barcode=item,
                result=Result.DONE,
                title=reply.title_identifier,
                due=parse_due(reply.due_date),
                screen_message=screen,
                release_security=reply.desensitize is not Tristate.NO,
            )
        refusal = item_refusal(screen, self._wording)
        if action is Action.RENEW and refusal is Refusal.TOO_MANY_ITEMS:
            refusal = Refusal.RENEWAL_LIMIT
        return ItemOutcome(
            action=action,
            barcode=item,
            result=Result.REFUSED,
            title=reply.title_identifier,
            refusal=refusal,
            screen_message=screen,
        )

    async def give_back(self, item: str) -> ItemOutcome:
        """Return an item (09), or journal it when the server is out of reach."""
        await self._link.settled()
        await self._after_replay()
        if not self.online:
            return self._return_offline(item)
        now = _local(self._now())
        request = CheckinRequest(
            no_block=False,
            transaction_date=now,
            return_date=now,
            current_location=self._config.kiosk.branch,
            institution_id=self._institution,
            item_identifier=item,
            terminal_password=self._terminal_password,
        )
        try:
            reply = await self._link.request(request)
        except UnsupportedRequestError:
            return self._refused(Action.RETURN, item, Refusal.SERVER_UNREACHABLE)
        except SipLinkError as problem:
            if problem.sent:
                return self._return_unconfirmed(item, str(problem))
            return self._return_offline(item)
        if not isinstance(reply, CheckinResponse):
            return self._refused(Action.RETURN, item, Refusal.OTHER)
        screen = _screen(reply)
        if not reply.ok:
            return ItemOutcome(
                action=Action.RETURN,
                barcode=item,
                result=Result.REFUSED,
                title=reply.title_identifier or "",
                refusal=item_refusal(screen, self._wording),
                screen_message=screen,
            )
        note = ReturnNote.NONE
        if reply.alert and reply.hold_patron_id:
            note = ReturnNote.HOLD_SHELF
        elif reply.alert and reply.destination_location:
            note = ReturnNote.OTHER_BRANCH
        return ItemOutcome(
            action=Action.RETURN,
            barcode=item,
            result=Result.DONE,
            title=reply.title_identifier or "",
            screen_message=screen,
            note=note,
        )

    def _return_offline(self, item: str) -> ItemOutcome:
        offline = self._config.offline
        if not self.offline_ready or not (offline.enabled and offline.returns):
            return self._refused(Action.RETURN, item, Refusal.SERVER_UNREACHABLE)
        assert self.journal is not None
        try:
            self.journal.record(EntryKind.RETURN, item=item, at=self._now())
        except (JournalError, sqlite3.Error) as error:
            return self._journal_failed(Action.RETURN, item, error)
        return ItemOutcome(action=Action.RETURN, barcode=item, result=Result.QUEUED)

    def _return_unconfirmed(self, item: str, why: str) -> ItemOutcome:
        """A return sent whose reply never came: the server may have done it.

        It is never journalled for a replay: sent again later, after the item
        was lent to someone else, it would close that new loan. It is kept
        for staff to check by hand, and the patron hands the item in at the
        desk.
        """
        if self.journal is not None:
            try:
                self.journal.record_unknown(
                    EntryKind.RETURN, item=item, at=self._now(), why=why
                )
            except (JournalError, sqlite3.Error) as error:
                self.journal_problem = str(error)
                log.error("offline journal failed: {error}", error=error)
        return self._refused(Action.RETURN, item, Refusal.RETURN_UNCONFIRMED)

    @staticmethod
    def _refused(action: Action, item: str, refusal: Refusal) -> ItemOutcome:
        return ItemOutcome(
            action=action, barcode=item, result=Result.REFUSED, refusal=refusal
        )
