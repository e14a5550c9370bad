"""What the kiosk asks the server, and what the answers mean for a patron.

Layer: `kiosk`, plain Python over the SIP2 link (no Kivy, never `ils`). Builds
SIP2 requests with the codec's message values, turns replies into outcomes
that name a `Refusal` instead of a code, and, when the server is out of reach
and the policy allows, writes returns and checkouts to the offline journal and
replays them later in order, with their real time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from sip2server.protocol import (
    CheckinRequest,
    CheckinResponse,
    CheckoutRequest,
    CheckoutResponse,
    EndPatronSessionRequest,
    FeeDetail,
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
from .journal import EntryKind, EntryState, Journal, JournalEntry, JournalError
from .sipclient import LinkState, SipLinkError, UnsupportedRequestError
from .wording import Refusal, Wording, item_refusal, patron_refusal

log = Logger()


class Link(Protocol):
    """What the desk needs of the SIP2 link (`SipLink` in the kiosk)."""

    state: LinkState

    async def request(self, message: Message) -> Message: ...

    async def settled(self) -> None: ...


class Action(enum.StrEnum):
    """What the patron asked for with an item."""

    BORROW = "borrow"
    RETURN = "return"
    RENEW = "renew"


class Result(enum.StrEnum):
    """How it went."""

    DONE = "done"
    REFUSED = "refused"
    # Written to the offline journal; the server will hear of it later.
    QUEUED = "queued"
    # Already on loan to this patron: renewing is offered instead.
    OFFER_RENEW = "offer_renew"


class ReturnNote(enum.StrEnum):
    """Extra words for a return, from the server's routing fields."""

    NONE = ""
    HOLD_SHELF = "hold_shelf"
    OTHER_BRANCH = "other_branch"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ItemOutcome:
    """One row of the item list on screen."""

    action: Action
    barcode: str
    result: Result
    title: str = ""
    due: date | None = None
    refusal: Refusal | None = None
    #: The server's screen message, the fallback wording of a refusal.
    screen_message: str = ""
    note: ReturnNote = ReturnNote.NONE
    #: The server agreed to the loan and did not say to keep the tag secured
    #: (desensitize not N): the pad may unsecure it.
    release_security: bool = True
    #: The tag's security could not be written (or read back) after the loan
    #: or return; the patron is sent to the desk with the item.
    security_failed: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Patron:
    """The identified patron, for the length of one session."""

    barcode: str
    pin: str | None
    name: str
    #: Why borrowing is refused (returns and the account stay allowed).
    borrow_refusal: Refusal | None
    screen_message: str
    email: str | None
    loans: frozenset[str]
    #: True when identified while the server was out of reach (not checked).
    offline: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Identified:
    """The outcome of identifying: a patron, or why not."""

    patron: Patron | None
    refusal: Refusal | None = None
    screen_message: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Loan:
    """A loan on the account screen."""

    barcode: str
    title: str
    due: date | None
    overdue: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Hold:
    """A hold on the account screen."""

    barcode: str
    title: str
    ready: bool
    #: How many are waiting: the title's queue when the server sends HQ, else
    #: the holds the item could fill (18's CF).
    queue_length: int | None
    #: The patron's place in that queue (from 1), when the server sends HQ.
    queue_position: int | None = None


#: Our server's extension field of 64, one per unavailable hold still queued:
#: "<position>/<queue length> <the hold's CD entry>" (docs/sip2-conformance.md,
#: "Hold queue places in 64"). Other servers do not send it.
QUEUE_PLACE_FIELD = "HQ"
# At most 9 digits each: no queue is longer, and no huge number is ever read.
_QUEUE_PLACE = re.compile(r"([0-9]{1,9})/([0-9]{1,9}) (.*)", re.DOTALL)
# A value this long may have been cut short by the server (SIP2's field limit).
_FIELD_LIMIT = 255


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class QueuePlace:
    """One HQ field: where the patron stands in the queue of the hold `entry`."""

    position: int
    length: int
    entry: str
    #: The value reached the field limit, so `entry` may be a cut-off start.
    cut: bool = False


def queue_places(reply: PatronInformationResponse) -> list[QueuePlace]:
    """The HQ fields of a 64, in order; a value not in that form is skipped."""
    places = []
    for code, value in reply.extra_fields:
        if code != QUEUE_PLACE_FIELD:
            continue
        found = _QUEUE_PLACE.fullmatch(value)
        if found is None:
            continue
        position, length = int(found[1]), int(found[2])
        if 1 <= position <= length:
            places.append(
                QueuePlace(
                    position=position,
                    length=length,
                    entry=found[3],
                    cut=len(value) >= _FIELD_LIMIT,
                )
            )
    return places


def take_place(entry: str, places: list[QueuePlace]) -> QueuePlace | None:
    """The first of `places` naming the CD `entry`, removed from the list so that
    two alike entries get a place each, in order; None when there is none."""
    for index, place in enumerate(places):
        if place.entry == entry or (place.cut and entry.startswith(place.entry)):
            return places.pop(index)
    return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Account:
    """The patron's account: loans, holds, fees."""

    loans: tuple[Loan, ...]
    holds_ready: tuple[Hold, ...]
    holds_pending: tuple[Hold, ...]
    fee_total: str
    currency: str
    fees: tuple[FeeDetail, ...]


def parse_due(text: str | None) -> date | None:
    """The day of a due date (AH) in the forms servers write, or None."""
    if not text:
        return None
    cleaned = text.strip()
    for form, width in (("%Y%m%d", 8), ("%Y-%m-%d", 10), ("%m/%d/%Y", 10)):
        try:
            return datetime.strptime(cleaned[:width], form).date()
        except ValueError:
            continue
    return None


def _local(moment: datetime) -> datetime:
    # SIP2 dates carry no zone: they are the terminal's local time.
    return moment.astimezone().replace(tzinfo=None)


def _screen(reply: Any) -> str:
    return " ".join(getattr(reply, "screen_message", ()) or ())


class SipDesk:
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

    # -- the offline journal ---------------------------------------------------

    async def _after_replay(self) -> None:
        """Wait until the journal has been replayed, so nothing overtakes it.

        A return or loan sent while earlier offline entries for the same item
        are still in the journal would reach the server before them (a book
        returned online, then lent by the replay). While a replay runs the
        patron's request waits for its end; with entries pending and none
        running, one is run first.
        """
        if not self.online or self.journal is None:
            return
        if self._replaying:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._replay_waiters.append(waiter)
            await waiter
            return
        try:
            pending = bool(self.journal.pending())
        except (JournalError, sqlite3.Error):
            return
        if pending:
            await self.replay()

    async def replay(self) -> int:
        """Send the journal's pending entries in order; returns how many were sent.

        Stops at the first entry that cannot be sent (the server went away
        again); an entry whose reply never came is marked unknown, for staff.
        """
        if self.journal is None or self._replaying:
            return 0
        self._replaying = True
        sent = 0
        try:
            sent = await self._replay_entries(self.journal)
        except (JournalError, sqlite3.Error) as error:
            # The journal cannot be read or marked: stop, and tell staff. The
            # patrons are served online meanwhile; nothing offline is taken.
            self.journal_problem = str(error)
            log.error("offline journal failed during the replay: {error}", error=error)
        finally:
            self._replaying = False
            waiters, self._replay_waiters = self._replay_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        return sent

    async def _replay_entries(self, journal: Journal) -> int:
        sent = 0
        for entry in journal.pending():
            if not self.online:
                break
            journal.mark_in_flight(entry)
            try:
                reply = await self._link.request(self._replay_request(entry))
            except SipLinkError as problem:
                if problem.sent:
                    journal.mark_result(
                        entry, EntryState.UNKNOWN, str(problem), self._now()
                    )
                else:
                    journal.mark_not_sent(entry)
                break
            ok = bool(getattr(reply, "ok", False))
            journal.mark_result(
                entry,
                EntryState.DONE if ok else EntryState.REFUSED,
                _screen(reply) or ("accepted" if ok else "refused"),
                self._now(),
            )
            sent += 1
        return sent

    def _replay_request(self, entry: JournalEntry) -> Message:
        # In UTC (sent as `   Z`): the server reads a zone-less date as its
        # branch's local time, which need not be this machine's zone.
        at = entry.happened_at.astimezone(UTC)
        if entry.kind is EntryKind.RETURN:
            return CheckinRequest(
                no_block=True,
                transaction_date=at,
                return_date=at,
                current_location=self._config.kiosk.branch,
                institution_id=self._institution,
                item_identifier=entry.item,
                terminal_password=self._terminal_password,
            )
        return CheckoutRequest(
            sc_renewal_policy=False,
            no_block=True,
            transaction_date=at,
            institution_id=self._institution,
            patron_identifier=entry.patron or "",
            item_identifier=entry.item,
            terminal_password=self._terminal_password,
        )
