"""A terminal's session: login state and which messages it may send when.

Layer: `sip2server`. Runs in a worker thread, one request at a time per
connection, so its state needs no locks. It knows the session rules of SIP2
(login first, 99 allowed before login) and leaves what each message means to
`SipCirculation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sip2server.accounts import AccountBook
from sip2server.config import AccountConfig
from sip2server.mapping import SipCirculation
from sip2server.protocol import LoginRequest, LoginResponse, ScStatusRequest

DEFAULT_ENCODING = "utf-8"


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
        return Reply(self._circulation.answer(message, self.account))

    def _login(self, request: LoginRequest) -> LoginResponse:
        account = self._accounts.authenticate(
            request.login_user_id or "", request.login_password or ""
        )
        # A failed login also ends any earlier login on this connection.
        self.account = account
        return LoginResponse(ok=account is not None)
