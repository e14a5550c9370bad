"""A terminal's session: login state and which messages it may send when.

Layer: `sip2server`. Runs in a worker thread, one request at a time per
connection, so its state needs no locks. It knows the session rules of SIP2
(login first, 99 allowed before login) and the account's own rules (where it
may log in from, how many at once, which messages it may send), and leaves
what each message means to `SipCirculation`.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DataError, DBAPIError
from twisted.logger import Logger

from sip2server.accounts import (
    AccountBook,
    Admission,
    TerminalCertificate,
    certificate_refusal,
)
from sip2server.config import MESSAGE_NAMES, AccountConfig
from sip2server.health import DatabaseHealth
from sip2server.mapping import SipCirculation
from sip2server.protocol import (
    AcsStatusResponse,
    LoginRequest,
    LoginResponse,
    ScStatusRequest,
)

DEFAULT_ENCODING = "utf-8"

# What a patron reads when the database cannot be reached.
UNAVAILABLE = "The library system is not available just now; please try again."

# What a terminal shows for a request with a value that cannot be read.
UNREADABLE = "This request could not be read; please try again or ask staff."

# What a terminal shows for a request its account may not send.
NOT_ALLOWED = "This terminal may not do this; please ask staff."

# At most one warning per this many seconds while the database is unreachable.
_OUTAGE_WARNING_INTERVAL = 30.0

# AO, AA and AB of a frame that did not decode, to echo in a negative reply.
_ECHOED = re.compile(r"(AO|AA|AB)([^|]*)")

# Each request's name in BX of 98, by its command code: the names accounts'
# `messages` lists, metrics and the transaction log use.
REQUEST_NAMES = {
    "23": "patron_status_request",
    "11": "checkout",
    "09": "checkin",
    "01": "block_patron",
    "99": "sc_acs_status",
    "97": "request_sc_acs_resend",
    "93": "login",
    "63": "patron_information",
    "35": "end_patron_session",
    "37": "fee_paid",
    "17": "item_information",
    "19": "item_status_update",
    "25": "patron_enable",
    "15": "hold",
    "29": "renew",
    "65": "renew_all",
}

log = Logger(namespace="sip2server")


class _OutageLog:
    """Warns of database errors once per interval, counting the rest."""

    def __init__(self) -> None:
        self._last = float("-inf")
        self._quiet = 0

    def record(self, error: DBAPIError, conn: int) -> None:
        now = time.monotonic()
        if now - self._last < _OUTAGE_WARNING_INTERVAL:
            self._quiet += 1
            return
        log.warn(
            "database unavailable, terminals told to try again conn={conn}: "
            "{problem} ({quiet} more since the last warning)",
            conn=conn,
            problem=str(error.orig).strip().splitlines()[0],
            quiet=self._quiet,
        )
        self._last, self._quiet = now, 0


_outages = _OutageLog()


@dataclass(frozen=True, slots=True)
class Reply:
    """What the session answers to one request.

    `message` is None when this server does not support the request (or the
    session refuses it outright); the terminal is then sent 96. `note` says
    why a login was refused, for the log; `outage` marks a refusal because the
    database could not be reached. `transient` marks a refusal that may not
    hold when the same request comes again (a lockout that ends, an account
    seat that frees): it is not replayed as a retransmission's answer, and a
    refused login so marked is not a failed one.
    """

    message: Any | None
    note: str | None = None
    outage: bool = False
    transient: bool = False


def _in_utc(refusal: Any) -> Any:
    """A refusal before login with its date marked UTC (`   Z`).

    With no account there is no branch, so no local time: the date is UTC,
    and is sent as such rather than as if it were the terminal's local time.
    """
    when = getattr(refusal, "transaction_date", None)
    if not isinstance(when, datetime) or when.tzinfo is not None:
        return refusal
    return dataclasses.replace(refusal, transaction_date=when.replace(tzinfo=UTC))


def request_name(message: Any) -> str:
    """A request's BX name (`checkout`), or its class name if it has none."""
    return REQUEST_NAMES.get(getattr(message, "command", ""), type(message).__name__)


class TerminalSession:
    """The state of one connected terminal."""

    def __init__(
        self,
        accounts: AccountBook | Callable[[], AccountBook],
        circulation: SipCirculation,
        *,
        admission: Admission | None = None,
        health: DatabaseHealth | None = None,
        connection_id: int = 0,
        status_before_login: bool = True,
        all_accounts: Callable[[], AccountBook] | None = None,
    ) -> None:
        # A callable is asked at each login, so a reload reaches new logins on
        # connections that were already open.
        self._accounts = accounts if callable(accounts) else (lambda: accounts)
        self._circulation = circulation
        # Every account of the server, whatever the listener admits: only to
        # say in the log why a login was refused.
        self._all_accounts = all_accounts
        self._admission = admission
        self._health = health or DatabaseHealth()
        self.connection_id = connection_id
        self.status_before_login = status_before_login
        # The terminal's own address (from the PROXY header when there is one),
        # set by the connection before it hands over a login.
        self.address = ""
        # Whether the connection is TLS, and the certificate its terminal
        # presented: set by the connection after the handshake, for accounts
        # tied to certificates.
        self.tls = False
        self.certificate: TerminalCertificate | None = None
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
            return self._login(message)

        if isinstance(message, ScStatusRequest):
            if self.account is None and not self.status_before_login:
                return Reply(None, note="status request before login")
            return Reply(self._status())

        if self.account is None:
            # SIP2 leaves this open; we answer in the message's own terms so the
            # terminal shows a reason instead of resending forever.
            return Reply(
                _in_utc(
                    self._circulation.refuse(
                        message, "This terminal has not logged in (send 93 first)."
                    )
                )
            )
        if not self.account.allows_message(request_name(message)):
            return Reply(
                self._circulation.refuse(message, NOT_ALLOWED, self.account),
                note="message not allowed for this account",
            )
        try:
            answer = self._circulation.answer(message, self.account)
        except DataError:
            # The database refused a value (a NUL in a barcode, say): the
            # request is unreadable, the database is fine.
            return Reply(self._circulation.refuse(message, UNREADABLE, self.account))
        except DBAPIError as error:
            self._health.failed(error)
            _outages.record(error, self.connection_id)
            return Reply(
                self._circulation.refuse(
                    message, UNAVAILABLE, self.account, outage=True
                ),
                outage=True,
                transient=True,
            )
        self._health.answered()
        return Reply(answer)

    def _status(self) -> AcsStatusResponse:
        status = self._circulation.status(self.account)
        if self.account is not None and self.account.messages is not None:
            # BX tells the terminal only what this account may really send.
            allowed = self.account.messages
            status = dataclasses.replace(
                status,
                supported_messages=dataclasses.replace(
                    status.supported_messages,
                    **{name: False for name in MESSAGE_NAMES if name not in allowed},
                ),
            )
        if not self._health.online:
            # The spec's offline state: a terminal may switch to its own
            # offline mode instead of sending requests that will be refused.
            status = dataclasses.replace(
                status,
                online_status=False,
                checkin_ok=False,
                checkout_ok=False,
                acs_renewal_policy=False,
            )
        return status

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

    def rebind(self, accounts: AccountBook, circulation: SipCirculation) -> str | None:
        """Take a reloaded configuration; the reason to close, if the login lapsed.

        Called on the reactor's thread by a reload. A logged-in terminal moves
        to the new account of its login, so its policy, sort bins, messages
        and output settings apply from its next request. If that login is gone
        from this listener, its password changed, its address is no longer
        allowed, or it is now tied to certificates that do not include this
        connection's, the account is kept (for the reply in hand) and the
        reason is returned: the connection is then closed.
        """
        self._circulation = circulation
        current = self.account
        if current is None:
            return None
        new = accounts.get(current.login)
        if new is None:
            return "its account was removed or is no longer admitted on this listener"
        if (new.password, new.password_hash) != (
            current.password,
            current.password_hash,
        ):
            return "its account's password changed"
        if not new.allows_address(self.address):
            return "its address is no longer in the account's allowed_networks"
        refusal = certificate_refusal(new, tls=self.tls, certificate=self.certificate)
        if refusal is not None:
            return f"its certificate is no longer admitted: {refusal}"
        self.account = new
        return None

    def _login(self, request: LoginRequest) -> Reply:
        # A failed login also ends any earlier login on this connection.
        previous, self.account = self.account, None
        if previous is not None and self._admission is not None:
            self._admission.release_seat(self.connection_id)

        admission = self._admission
        login, password = request.login_user_id or "", request.login_password or ""
        blocked = (
            None if admission is None else admission.login_blocked(self.address, login)
        )
        if blocked is not None:
            # Checked before the password, so guessing from this address costs
            # the guesser time and the server no hashing.
            return Reply(
                LoginResponse(ok=False), note=f"{blocked}; try later", transient=True
            )
        book = self._accounts()
        account = book.authenticate(login, password)
        if account is None:
            self._count_failure(login)
            return Reply(
                LoginResponse(ok=False), note=self._why_refused(book, login, password)
            )
        if not account.allows_address(self.address):
            self._count_failure(login)
            return Reply(
                LoginResponse(ok=False),
                note="address not in the account's allowed_networks",
            )
        refusal = certificate_refusal(
            account, tls=self.tls, certificate=self.certificate
        )
        if refusal is not None:
            # The same 940 as a wrong password: the terminal learns nothing
            # about which of the two it lacks; the log says.
            self._count_failure(login)
            return Reply(LoginResponse(ok=False), note=refusal)
        if admission is not None and not admission.take_seat(
            self.connection_id, account
        ):
            return Reply(
                LoginResponse(ok=False),
                note=f"account at its limit of {account.max_connections} connections",
                transient=True,
            )
        self.account = account
        return Reply(LoginResponse(ok=True))

    def _why_refused(self, book: AccountBook, login: str, password: str) -> str:
        # For the log only (the terminal gets 940 either way): a right password
        # for an account this listener does not admit is a configuration matter.
        if self._all_accounts is None or book.get(login) is not None:
            return "wrong login or password"
        everywhere = self._all_accounts()
        if everywhere.get(login) is None:
            return "wrong login or password"
        if everywhere.authenticate(login, password) is None:
            return "wrong password for an account not admitted on this listener"
        return "account not admitted on this listener (see its accounts list)"

    def _count_failure(self, login: str) -> None:
        if self._admission is not None and self.address:
            self._admission.login_failed(self.address, login)
