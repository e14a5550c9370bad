"""What every `ils sip` command shares: the terminal's connection and identity,
sending one request, and printing replies field by field.

Layer: `sip2server`, beside the SIP2 client. Imports click, the codec, the client
and the standard library; never `ils` (it talks to servers only over the wire).
Passwords and PINs (CO, AC, AD) are never printed, in clear or in a frame.
"""

from __future__ import annotations

import dataclasses
import enum
import ssl
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import click

from sip2server.client import SipClient, SipClientError
from sip2server.protocol import (
    LoginRequest,
    Message,
    ProtocolError,
    checksum,
    redact_frame,
)
from sip2server.protocol._layouts import BY_TYPE

# Attributes whose values are never printed (AC, AD, CO).
_SECRET_ATTRIBUTES = frozenset(
    {"terminal_password", "patron_password", "login_password"}
)


@dataclasses.dataclass
class Terminal:
    """What every subcommand needs: the connection and the terminal's identity."""

    client: SipClient
    institution: str
    location: str
    terminal_password: str
    show_wire: bool
    login: str | None
    password: str | None
    connected: bool = False
    logged_in: bool = False
    #: Set by `ils sip shell`: a lost connection is opened again, with a new
    #: login, by the next command.
    in_shell: bool = False
    #: The connection was lost: the next `ready` says it connects again.
    dropped: bool = False

    def ready(self, out: TextIO) -> SipClient:
        """The client, connected and logged in on first use (so --help is offline),
        and again after the server closed the connection (a restart, or a reload
        that changed the account).

        Raises:
            SipClientError: the server cannot be reached.
            LoginRefused: the server refused the login.
        """
        if self.connected and self.client.closed_by_server():
            self.drop()
        if not self.connected:
            if self.dropped:
                client = self.client
                out.write(
                    f"the connection was closed; connecting again to "
                    f"{client.host}:{client.port}\n"
                )
            self.client.connect()
            self.connected = True
        if self.login is not None and not self.logged_in:
            self.ask_password()
            if self.dropped:
                out.write(f"logging in again as {self.login!r}\n")
            log_in(self, self.login, self.password, out)
        self.dropped = False
        return self.client

    def ask_password(self) -> None:
        """Ask for the password of --login if none was given. A command that
        also asks for a patron's PIN calls this first, so the two prompts come
        in the order the options are written (login, then patron)."""
        if self.login is not None and self.password is None:
            self.password = click.prompt(
                f"SIP password of login {self.login!r}", hide_input=True
            )

    def drop(self) -> None:
        """Forget a connection that failed: the next `ready` opens a new one."""
        self.client.close()
        self.dropped = self.dropped or self.connected
        self.connected = False
        self.logged_in = False


class LoginRefused(click.ClickException):
    """The server answered the terminal's login (93) with a refusal (940)."""


def _value(value: Any) -> str:
    if isinstance(value, enum.Enum):
        return f"{value.value} ({value.name.lower()})"
    if isinstance(value, tuple):
        return " | ".join(_value(part) for part in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        flags = [
            f.name for f in dataclasses.fields(value) if getattr(value, f.name) is True
        ]
        return ", ".join(flags) or "(none set)"
    return str(value)


def show_message(message: Message, out: TextIO) -> None:
    """Write a message field by field: fixed fields by name, then variable fields
    with their codes (`AJ title_identifier: ...`); passwords and PINs as `***`."""
    out.write(f"{type(message).__name__} ({message.command})\n")
    layout = BY_TYPE.get(type(message))
    codes = {} if layout is None else {f.name: f.code for f in layout.variable}
    for field in dataclasses.fields(message):
        value = getattr(message, field.name)
        if value is None or value in {(), ""}:
            continue
        code = codes.get(field.name)
        label = field.name if code is None else f"{code} {field.name}"
        shown = "***" if field.name in _SECRET_ATTRIBUTES else _value(value)
        if field.name == "extra_fields":
            shown = " | ".join(f"{c}={v}" for c, v in value)
        out.write(f"  {label}: {shown}\n")


def print_frames(terminal: Terminal, out: TextIO) -> None:
    """Write the last frames sent and received, passwords and PINs as `***`."""
    client = terminal.client
    sent = client.last_request.rstrip(b"\r\n")
    out.write(f"  sent: {redact_frame(sent, mask_patron=False)}\n")
    out.write(f"  wire: {redact_frame(client.last_reply, mask_patron=False)}\n")


def send(terminal: Terminal, message: Message, out: TextIO) -> Message:
    """Send one request, print its reply (and frames with --show-wire), return it.

    Raises:
        SipClientError: no usable reply (closed, timed out, not connected).
        ProtocolError: the reply does not decode.
    """
    reply = terminal.client.request(message)
    show_message(reply.message, out)
    if terminal.show_wire:
        print_frames(terminal, out)
    return reply.message


def terminal_now() -> datetime:
    """The transaction date a terminal sends: local time, no zone (SIP2 dates)."""
    return datetime.now()


def log_in(
    terminal: Terminal, login: str | None, password: str | None, out: TextIO
) -> None:
    """Log the terminal in (93) once; a refusal (940) ends the command.

    Raises:
        LoginRefused: the server refused the login.
    """
    if login is None or terminal.logged_in:
        return
    reply = send(
        terminal,
        LoginRequest(
            login_user_id=login,
            login_password=password or "",
            location_code=terminal.location,
        ),
        out,
    )
    terminal.logged_in = bool(getattr(reply, "ok", False))
    if not terminal.logged_in:
        again = " when connecting again (was its password changed?)"
        raise LoginRefused(
            f"login {login!r} refused by the server{again if terminal.dropped else ''}"
        )


def tls_context(
    ca: Path | None, certificate: Path | None, key: Path | None
) -> ssl.SSLContext:
    """A client TLS context trusting `ca` (or the system's CAs), showing a
    client certificate when one is given.

    Raises:
        click.UsageError: a key without a certificate, or files that do not load.
    """
    if key is not None and certificate is None:
        raise click.UsageError("--key needs --cert (the client certificate)")
    try:
        context = ssl.create_default_context(cafile=None if ca is None else str(ca))
        if certificate is not None:
            context.load_cert_chain(str(certificate), None if key is None else str(key))
    except (OSError, ssl.SSLError) as error:
        raise click.UsageError(f"cannot load the TLS files: {error}") from error
    return context


def run_request(ctx: click.Context, build: Callable[[Terminal], Message]) -> None:
    """Connect and log in if needed, send `build(terminal)`, print the reply.

    Raises:
        click.ClickException: the connection or the reply failed (one line);
            LoginRefused when the server refused the login.
    """
    terminal: Terminal = ctx.obj
    out = sys.stdout
    try:
        terminal.ready(out)
        send(terminal, build(terminal), out)
    except SipClientError as error:
        raise connection_lost(terminal, error) from None
    except ProtocolError as error:
        raise click.ClickException(str(error)) from None


def connection_lost(terminal: Terminal, error: SipClientError) -> click.ClickException:
    """The error to show for a failed exchange; the connection is dropped, as
    its state is unknown (a reply may still come), and the shell's next command
    opens a new one."""
    terminal.drop()
    if terminal.in_shell:
        return click.ClickException(f"{error} (the next command connects again)")
    return click.ClickException(str(error))


def _pin(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    # "-" asks for the PIN without echo, so it stays out of the shell's history
    # and the process list.
    if value == "-":
        # The SIP password first: asked after the PIN, the PIN would be typed
        # into it by anyone answering in the order of the command line.
        terminal = ctx.find_object(Terminal)
        if terminal is not None:
            terminal.ask_password()
        return str(click.prompt("Patron PIN", hide_input=True))
    return value


PIN_OPTION = click.option(
    "--pin",
    callback=_pin,
    help="The patron's PIN (AD); '-' asks for it without echo. Never printed.",
)


def with_checksum(frame: str, sequence: int) -> str:
    """`frame` with `AY<sequence>AZ<checksum>` appended (SIP2 error detection)."""
    head = f"{frame}AY{sequence}AZ"
    return head + checksum(head.encode("utf-8"))
