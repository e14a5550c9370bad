"""A terminal's session: login state and which messages it may send when.

Layer: `sip2server`. Runs in a worker thread, one request at a time per
connection, so its state needs no locks. It knows the session rules of SIP2
(login first, 99 allowed before login) and leaves what each message means to
`SipCirculation`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError
from twisted.logger import Logger

from sip2server.accounts import AccountBook
from sip2server.config import AccountConfig
from sip2server.mapping import SipCirculation
from sip2server.protocol import LoginRequest, LoginResponse, ScStatusRequest

DEFAULT_ENCODING = "utf-8"

# What a patron reads when the database cannot be reached.
UNAVAILABLE = "The library system is not available just now; please try again."

# What a terminal shows for a request with a value that cannot be read.
UNREADABLE = "This request could not be read; please try again or ask staff."

# At most one warning per this many seconds while the database is unreachable.
_OUTAGE_WARNING_INTERVAL = 30.0

# AO, AA and AB of a frame that did not decode, to echo in a negative reply.
_ECHOED = re.compile(r"(AO|AA|AB)([^|]*)")

log = Logger(namespace="sip2server")


class _OutageLog:
    """Warns of database errors once per interval, counting the rest."""

    def __init__(self) -> None:
        self._last = float("-inf")
        self._quiet = 0

    def record(self, error: DBAPIError) -> None:
        now = time.monotonic()
        if now - self._last < _OUTAGE_WARNING_INTERVAL:
            self._quiet += 1
            return
        log.warn(
            "database unavailable, terminals told to try again: {problem} "
            "({quiet} more since the last warning)",
            problem=str(error.orig).strip().splitlines()[0],
            quiet=self._quiet,
        )
        self._last, self._quiet = now, 0


_outages = _OutageLog()


@dataclass(frozen=True, slots=True)
class Reply:
    """What the session answers to one request.

    `message` is None when this server does not support the request; the
    terminal is then sent 96, as the walking skeleton promises.
    """

    message: Any | None


class TerminalSession:
    """The state of one connected terminal."""

    def __init__(self, accounts: AccountBook, circulation: SipCirculation) -> None:
        self._accounts = accounts
        self._circulation = circulation
        self.account: AccountConfig | None = None

    @property
    def login(self) -> str | None:
        """The SIP login in use, once the terminal has logged in."""
        return None if self.account is None else self.account.login

    @property
    def encoding(self) -> str:
        """The character set of this terminal's frames, both ways."""
        return DEFAULT_ENCODING if self.account is None else self.account.encoding

    def handle(self, message: Any) -> Reply:
        """Answer one decoded request (in a worker thread)."""
        if isinstance(message, LoginRequest):
            return Reply(self._login(message))

        if isinstance(message, ScStatusRequest):
            return Reply(self._circulation.status(self.account))

        if self.account is None:
            # SIP2 leaves this open; we answer in the message's own terms so the
            # terminal shows a reason instead of resending forever.
            return Reply(
                self._circulation.refuse(
                    message, "This terminal has not logged in (send 93 first)."
                )
            )
        try:
            return Reply(self._circulation.answer(message, self.account))
        except DataError:
            # The database refused a value (a NUL in a barcode, say): the
            # request is unreadable, the database is fine.
            return Reply(self._circulation.refuse(message, UNREADABLE, self.account))
        except DBAPIError as error:
            # TODO(#5): report the outage in 98 (offline) as well, and retry the
            # database in the background instead of on the next request.
            _outages.record(error)
            return Reply(self._circulation.refuse(message, UNAVAILABLE, self.account))

    def negative_reply(self, command: str, payload: bytes) -> Any | None:
        """A negative reply to a frame that arrived whole but could not be read.

        Pure (no database), so the server may call it on its own thread. None
        when the terminal has not logged in or the command has no answer here.
        """
        if self.account is None:
            return None
        fields: dict[str, str] = {}
        for code, value in _ECHOED.findall(payload.decode("latin-1")):
            fields.setdefault(code, value)
        return self._circulation.refuse_command(
            command,
            UNREADABLE,
            institution=fields.get("AO", self.account.institution),
            patron=fields.get("AA", ""),
            item=fields.get("AB", ""),
            account=self.account,
        )

    def _login(self, request: LoginRequest) -> LoginResponse:
        account = self._accounts.authenticate(
            request.login_user_id or "", request.login_password or ""
        )
        # A failed login also ends any earlier login on this connection.
        self.account = account
        return LoginResponse(ok=account is not None)
