"""Asking the SIP2 server what an alarmed item is: item information (17 to 18).

Layer: `drivers`. Imports the standard library, `sip2server.protocol` and
`sip2server.client`; never `ils`. `SipItemLookup.lookup` blocks on the network:
the gate runs it in a thread of its own, after the alarm has sounded.

The gate logs in once with its SIP account (93) and keeps the connection; a
failed request closes it, and the next lookup logs in again. After a failure
it waits `retry_after` seconds before trying the server again, so an outage
costs one timeout, not one per alarm.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from drivers.gate.config import SipSection
from sip2server.client import SipClient, SipClientError
from sip2server.protocol import (
    CirculationStatus,
    ItemInformationRequest,
    ItemInformationResponse,
    LoginRequest,
    LoginResponse,
    ProtocolError,
)


class SipLookupError(ConnectionError):
    """The SIP2 server could not be asked; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemFacts:
    """What the library system says of an item: enough for staff at the gate."""

    item_id: str
    title: str
    status: CirculationStatus
    known: bool

    @property
    def on_loan(self) -> bool:
        """Whether the library system has the item out on loan."""
        return self.status in {
            CirculationStatus.CHARGED,
            CirculationStatus.CHARGED_NOT_TO_BE_RECALLED,
            CirculationStatus.RECALLED,
        }


STATUS_WORDS = {
    CirculationStatus.OTHER: "other",
    CirculationStatus.ON_ORDER: "on order",
    CirculationStatus.AVAILABLE: "available (not on loan)",
    CirculationStatus.CHARGED: "on loan",
    CirculationStatus.CHARGED_NOT_TO_BE_RECALLED: "on loan",
    CirculationStatus.IN_PROCESS: "in process",
    CirculationStatus.RECALLED: "on loan, recalled",
    CirculationStatus.WAITING_ON_HOLD_SHELF: "on the hold shelf",
    CirculationStatus.WAITING_TO_BE_RESHELVED: "waiting to be reshelved",
    CirculationStatus.IN_TRANSIT: "in transit",
    CirculationStatus.CLAIMED_RETURNED: "claimed returned",
    CirculationStatus.LOST: "lost",
    CirculationStatus.MISSING: "missing",
}
"""Circulation statuses of 18 in words for the log."""


class SipItemLookup:
    """One kept, logged-in connection to the SIP2 server, used for item information."""

    def __init__(
        self,
        section: SipSection,
        *,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._section = section
        self._now = now
        self._client: SipClient | None = None
        self._quiet_until = 0.0
        self._last_problem = ""

    def _connect(self) -> SipClient:
        section = self._section
        client = SipClient(
            section.host,
            section.port,
            timeout=section.timeout,
            error_detection=section.error_detection,
            encoding=section.encoding,
            # The whole reply within the timeout, not each of its bytes: a
            # server that never ends its reply must not hold the gate.
            deadline=section.timeout,
        )
        client.connect()
        try:
            reply = client.request(
                LoginRequest(
                    login_user_id=section.login,
                    login_password=section.password,
                    location_code=section.location,
                )
            ).message
        except (SipClientError, ProtocolError):
            client.close()
            raise
        if not isinstance(reply, LoginResponse) or not reply.ok:
            client.close()
            raise SipLookupError(
                f"the SIP2 server refused login {section.login!r} (check sip.login "
                "and sip.password)"
            )
        return client

    def connect(self) -> None:
        """Connect and log in now, unless already connected.

        Raises:
            SipLookupError: the server is down or refused the login.
        """
        try:
            if self._client is None:
                self._client = self._connect()
        except (SipClientError, ProtocolError, SipLookupError) as problem:
            self._failed(problem)
            if isinstance(problem, SipLookupError):
                raise
            raise SipLookupError(str(problem)) from problem

    def lookup(self, item_id: str) -> ItemFacts:
        """Ask for one item's title and circulation status.

        Raises:
            SipLookupError: the server is down, refused the login, or sent
                something unusable; or it failed less than `retry_after` ago.
        """
        if self._client is None and self._now() < self._quiet_until:
            raise SipLookupError(
                f"the SIP2 server failed a moment ago ({self._last_problem}); not asked"
            )
        try:
            return self._ask(item_id)
        except (SipClientError, ProtocolError, SipLookupError) as problem:
            self._failed(problem)
            if isinstance(problem, SipLookupError):
                raise
            raise SipLookupError(str(problem)) from problem

    def _failed(self, problem: Exception) -> None:
        # Kept for the alarms that follow, so each still says why.
        self.close()
        self._quiet_until = self._now() + self._section.retry_after
        self._last_problem = str(problem)

    def _ask(self, item_id: str) -> ItemFacts:
        if self._client is None:
            self._client = self._connect()
        reply = self._client.request(
            ItemInformationRequest(
                # A terminal sends its local time, with no zone (SIP2 dates).
                transaction_date=datetime.now(),
                institution_id=self._section.institution,
                item_identifier=item_id,
                terminal_password=self._section.terminal_password,
            )
        ).message
        if not isinstance(reply, ItemInformationResponse):
            raise SipLookupError(
                f"the SIP2 server answered 17 with {type(reply).__name__}"
            )
        # Servers answer an unknown item with an empty title (AJ) and status 01.
        known = bool(reply.title_identifier)
        return ItemFacts(
            item_id=item_id,
            title=reply.title_identifier,
            status=reply.circulation_status,
            known=known,
        )

    def close(self) -> None:
        """Close the connection, if open; the next lookup logs in again."""
        if self._client is not None:
            self._client.close()
            self._client = None
