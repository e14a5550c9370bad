"""`ils sip`: a SIP2 test client for troubleshooting a server or a terminal's account.

Layer: `sip2server`. Speaks to any SIP2 server over TCP with the project's own
codec, prints each reply field by field with the raw frame, and can run a whole
script of commands from a file or standard input (`ils sip shell`).
"""

from __future__ import annotations

import dataclasses
import enum
import shlex
import sys
from datetime import datetime
from typing import Any, TextIO

import click

from sip2server.client import SipClient, SipClientError
from sip2server.protocol import (
    CheckinRequest,
    CheckoutRequest,
    EndPatronSessionRequest,
    ItemInformationRequest,
    LoginRequest,
    Message,
    PatronInformationRequest,
    PatronStatusRequest,
    ProtocolError,
    ScStatusRequest,
    Summary,
    decode,
    redact_frame,
)


@dataclasses.dataclass
class _Terminal:
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

    def ready(self, out: TextIO) -> SipClient:
        """The client, connected and logged in on first use (so --help is offline)."""
        if not self.connected:
            self.client.connect()
            self.connected = True
        if self.login is not None and not self.logged_in:
            if self.password is None:
                self.password = click.prompt("SIP password", hide_input=True)
            _login(self, self.login, self.password, out)
        return self.client


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


def _show(message: Message, out: TextIO) -> None:
    out.write(f"{type(message).__name__} ({message.command})\n")
    for field in dataclasses.fields(message):
        value = getattr(message, field.name)
        if value is None or value in {(), ""}:
            continue
        out.write(f"  {field.name}: {_value(value)}\n")


def _send(terminal: _Terminal, message: Message, out: TextIO) -> Message:
    reply = terminal.client.request(message)
    _show(reply.message, out)
    if terminal.show_wire:
        out.write(
            f"  wire: {redact_frame(terminal.client.last_reply, mask_patron=False)}\n"
        )
    return reply.message


def _now() -> datetime:
    # A terminal sends its local time, with no zone (SIP2 dates).
    return datetime.now()


def _login(
    terminal: _Terminal, login: str | None, password: str | None, out: TextIO
) -> None:
    if login is None or terminal.logged_in:
        return
    reply = _send(
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
        raise click.ClickException(f"login {login!r} refused by the server")


@click.group(invoke_without_command=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Server address.")
@click.option("--port", default=6001, show_default=True, type=int, help="Server port.")
@click.option("--login", help="SIP login (93) to use first; none sends no login.")
@click.option(
    "--password",
    envvar="ILS_SIP_PASSWORD",
    help="Password of --login (or set ILS_SIP_PASSWORD; asked for if missing).",
)
@click.option("--institution", default="DEMO", show_default=True, help="AO to send.")
@click.option("--location", default="MAIN", show_default=True, help="Location (CP/AP).")
@click.option(
    "--terminal-password", default="", help="AC to send, if the server wants one."
)
@click.option("--no-checksum", is_flag=True, help="Send no AY/AZ error detection.")
@click.option("--crlf", is_flag=True, help="End frames with CRLF instead of CR.")
@click.option("--encoding", default="utf-8", show_default=True, help="Wire encoding.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait.")
@click.option("--show-wire", is_flag=True, help="Print each raw reply frame too.")
@click.pass_context
def sip(  # noqa: PLR0917 - click passes every option by position
    ctx: click.Context,
    host: str,
    port: int,
    login: str | None,
    password: str | None,
    institution: str,
    location: str,
    terminal_password: str,
    no_checksum: bool,
    crlf: bool,
    encoding: str,
    timeout: float,
    show_wire: bool,
) -> None:
    """Talk to a SIP2 server as a terminal would, to see what it answers.

    \b
    Examples:
      ils sip --login kiosk1 --password kiosk1-demo status
      ils sip --login kiosk1 --password kiosk1-demo patron 21234000000018 --pin 1234
      ils sip --login kiosk1 --password kiosk1-demo item 31234000000016
      ils sip --login kiosk1 --password kiosk1-demo shell < script.txt
    """
    client = SipClient(
        host,
        port,
        timeout=timeout,
        error_detection=not no_checksum,
        encoding=encoding,
        terminator=b"\r\n" if crlf else b"\r",
    )
    ctx.call_on_close(client.close)
    ctx.obj = _Terminal(
        client=client,
        institution=institution,
        location=location,
        terminal_password=terminal_password,
        show_wire=show_wire,
        login=login,
        password=password,
    )


def _run(ctx: click.Context, build: Any) -> None:
    terminal: _Terminal = ctx.obj
    out = click.get_text_stream("stdout")
    try:
        terminal.ready(out)
        _send(terminal, build(terminal), out)
    except (SipClientError, ProtocolError) as error:
        raise click.ClickException(str(error)) from None


@sip.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Ask for the server's status (99 -> 98)."""
    _run(ctx, lambda t: ScStatusRequest(max_print_width=80))


@sip.command()
@click.argument("barcode")
@click.option("--pin", help="The patron's PIN (AD).")
@click.option(
    "--brief", is_flag=True, help="Patron status (23) instead of information (63)."
)
@click.pass_context
def patron(ctx: click.Context, barcode: str, pin: str | None, brief: bool) -> None:
    """Look a patron up (63 -> 64, or 23 -> 24 with --brief)."""

    def build(t: _Terminal) -> Message:
        common = {
            "transaction_date": _now(),
            "institution_id": t.institution,
            "patron_identifier": barcode,
            "terminal_password": t.terminal_password,
            "patron_password": pin,
        }
        if brief:
            return PatronStatusRequest(**common)
        return PatronInformationRequest(
            summary=Summary(charged_items=True), start_item=1, end_item=20, **common
        )

    _run(ctx, build)


@sip.command()
@click.argument("patron_barcode")
@click.argument("item_barcode")
@click.option("--pin", help="The patron's PIN (AD).")
@click.pass_context
def checkout(
    ctx: click.Context, patron_barcode: str, item_barcode: str, pin: str | None
) -> None:
    """Check an item out to a patron (11 -> 12)."""
    _run(
        ctx,
        lambda t: CheckoutRequest(
            sc_renewal_policy=True,
            no_block=False,
            transaction_date=_now(),
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            item_identifier=item_barcode,
            terminal_password=t.terminal_password,
            patron_password=pin,
        ),
    )


@sip.command()
@click.argument("item_barcode")
@click.pass_context
def checkin(ctx: click.Context, item_barcode: str) -> None:
    """Return an item (09 -> 10)."""
    _run(
        ctx,
        lambda t: CheckinRequest(
            no_block=False,
            transaction_date=_now(),
            return_date=_now(),
            current_location=t.location,
            institution_id=t.institution,
            item_identifier=item_barcode,
            terminal_password=t.terminal_password,
        ),
    )


@sip.command()
@click.argument("item_barcode")
@click.pass_context
def item(ctx: click.Context, item_barcode: str) -> None:
    """Show what the server knows of an item (17 -> 18)."""
    _run(
        ctx,
        lambda t: ItemInformationRequest(
            transaction_date=_now(),
            institution_id=t.institution,
            item_identifier=item_barcode,
            terminal_password=t.terminal_password,
        ),
    )


@sip.command()
@click.argument("patron_barcode")
@click.pass_context
def end(ctx: click.Context, patron_barcode: str) -> None:
    """End a patron's session (35 -> 36)."""
    _run(
        ctx,
        lambda t: EndPatronSessionRequest(
            transaction_date=_now(),
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            terminal_password=t.terminal_password,
        ),
    )


@sip.command()
@click.argument("frame")
@click.pass_context
def raw(ctx: click.Context, frame: str) -> None:
    """Send FRAME exactly as typed (no checksum added) and show the reply."""
    terminal: _Terminal = ctx.obj
    out = click.get_text_stream("stdout")
    try:
        client = terminal.ready(out)
        payload = client.exchange(frame.encode(client.encoding) + client.terminator)
        _show(decode(payload, encoding=client.encoding).message, out)
        out.write(f"  wire: {redact_frame(payload, mask_patron=False)}\n")
    except (SipClientError, ProtocolError) as error:
        raise click.ClickException(str(error)) from None


@sip.command()
@click.pass_context
def shell(ctx: click.Context) -> None:
    """Read commands, one per line, from standard input (a script or a terminal).

    Each line is a subcommand with its arguments, e.g. `checkout 2123... 3123...`.
    Blank lines and lines starting with # are skipped; `quit` ends.
    """
    interactive = sys.stdin.isatty()
    while True:
        if interactive:
            click.echo("sip> ", nl=False)
        line = sys.stdin.readline()
        if not line or line.strip() in {"quit", "exit"}:
            return
        words = shlex.split(line, comments=True)
        if not words:
            continue
        command = sip.get_command(ctx, words[0])
        if command is None or words[0] == "shell":
            click.echo(f"unknown command {words[0]!r}; try: {', '.join(sip.commands)}")
            continue
        try:
            with command.make_context(words[0], words[1:], parent=ctx) as sub:
                command.invoke(sub)
        except click.ClickException as error:
            error.show()
        except click.exceptions.Exit:
            pass
