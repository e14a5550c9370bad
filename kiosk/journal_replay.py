"""The offline journal's replay: entries sent to the server in order, with their time.

Layer: `kiosk`, plain Python over the SIP2 link (no Kivy, never `ils`); it must
not import `kiosk.transactions` (whose `SipDesk` mixes it in) but for type
checking.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.logger import Logger

from sip2server.protocol import CheckinRequest, CheckoutRequest, Message

from .journal import EntryKind, EntryState, Journal, JournalEntry, JournalError
from .outcomes import _screen
from .sipclient import SipLinkError

# The same namespace as before the split, so log filters keep matching.
log = Logger(namespace="kiosk.transactions")

if TYPE_CHECKING:
    from .config import KioskConfig
    from .transactions import Link


class JournalReplay:
    """Replays the offline journal, mixed into `SipDesk` (kiosk/transactions.py).

    Uses the desk's link, journal, clock, configuration and replay state.
    """

    if TYPE_CHECKING:
        # Set by `SipDesk.__init__`; declared here for the type checker only.
        _link: Link
        _config: KioskConfig
        _now: Callable[[], datetime]
        _institution: str
        _terminal_password: str | None
        _replaying: bool
        _replay_waiters: list[defer.Deferred[None]]
        journal: Journal | None
        journal_problem: str | None

        @property
        def online(self) -> bool: ...

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
