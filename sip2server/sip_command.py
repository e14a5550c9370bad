"""`ils sip`: a SIP2 test client for troubleshooting a server or a terminal's account.

Layer: `sip2server`. Speaks to any SIP2 server over TCP (or TLS) with the
project's own codec and `SipClient`, prints each reply field by field (the spec's
field names, with their two-letter codes) and, on request, the raw frames with
passwords and PINs masked. It can run a script of commands (`ils sip shell`) or a
conformance plan (`ils sip conform`, see `sip2server.conformance`). It must not
import `ils`: it talks to servers only over the wire, like any terminal.
"""

from __future__ import annotations

import dataclasses
import enum
import shlex
import ssl
import sys
from collections.abc import Callable
from datetime import datetime, time
from pathlib import Path
from typing import Any, TextIO

import click

from sip2server.client import SipClient, SipClientError
from sip2server.protocol import (
    BlockPatronRequest,
    CheckinRequest,
    CheckoutRequest,
    EndPatronSessionRequest,
    FeePaidRequest,
    FeeType,
    HoldMode,
    HoldRequest,
    HoldType,
    ItemInformationRequest,
    LoginRequest,
    Message,
    PatronEnableRequest,
    PatronInformationRequest,
    PatronStatusRequest,
    PaymentType,
    ProtocolError,
    RenewAllRequest,
    RenewRequest,
    ScStatusRequest,
    Summary,
    checksum,
    decode,
    redact_frame,
)
from sip2server.protocol._layouts import BY_TYPE

# Attributes whose values are never printed (AC, AD, CO).
_SECRET_ATTRIBUTES = frozenset(
    {"terminal_password", "patron_password", "login_password"}
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


def _show_wire(terminal: _Terminal, out: TextIO) -> None:
    client = terminal.client
    sent = client.last_request.rstrip(b"\r\n")
    out.write(f"  sent: {redact_frame(sent, mask_patron=False)}\n")
    out.write(f"  wire: {redact_frame(client.last_reply, mask_patron=False)}\n")


def _send(terminal: _Terminal, message: Message, out: TextIO) -> Message:
    reply = terminal.client.request(message)
    show_message(reply.message, out)
    if terminal.show_wire:
        _show_wire(terminal, out)
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
@click.option(
    "--no-checksum",
    "--no-checksums",
    "no_checksum",
    is_flag=True,
    help="Send no AY/AZ error detection.",
)
@click.option("--crlf", is_flag=True, help="End frames with CRLF instead of CR.")
@click.option("--encoding", default="utf-8", show_default=True, help="Wire encoding.")
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait.")
@click.option(
    "--show-wire",
    is_flag=True,
    help="Print each frame sent and received too (passwords and PINs masked).",
)
@click.option("--tls", is_flag=True, help="Connect with TLS (a TLS listener).")
@click.option(
    "--ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --tls: the CA file (PEM) to trust instead of the system's.",
)
@click.option(
    "--cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --tls: the terminal's client certificate (PEM).",
)
@click.option(
    "--key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --tls: the private key of --cert, if not in the same file.",
)
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
    tls: bool,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
) -> None:
    """Talk to a SIP2 server as a terminal would, to see what it answers.

    \b
    Examples:
      ils sip --login kiosk1 --password kiosk1-demo status
      ils sip --login kiosk1 --password kiosk1-demo patron 21234000000018 --pin 1234
      ils sip --login kiosk1 --password kiosk1-demo item 31234000000016
      ils sip --login kiosk1 --password kiosk1-demo renew 21234000000018 31234000000016
      ils sip --login kiosk1 --password kiosk1-demo shell < script.txt
      ils sip conform --plan config/conformance-plan.toml
    """
    if not tls and (ca or cert or key):
        raise click.UsageError("--ca, --cert and --key need --tls")
    client = SipClient(
        host,
        port,
        timeout=timeout,
        error_detection=not no_checksum,
        encoding=encoding,
        terminator=b"\r\n" if crlf else b"\r",
        tls=tls_context(ca, cert, key) if tls else None,
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


def _run(ctx: click.Context, build: Callable[[_Terminal], Message]) -> None:
    terminal: _Terminal = ctx.obj
    out = sys.stdout
    try:
        terminal.ready(out)
        _send(terminal, build(terminal), out)
    except (SipClientError, ProtocolError) as error:
        raise click.ClickException(str(error)) from None


_PIN = click.option("--pin", help="The patron's PIN (AD); never printed.")


@sip.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Ask for the server's status (99 -> 98)."""
    _run(ctx, lambda t: ScStatusRequest(max_print_width=80))


@sip.command()
@click.argument("barcode")
@_PIN
@click.option(
    "--brief", is_flag=True, help="Patron status (23) instead of information (63)."
)
@click.pass_context
def patron(ctx: click.Context, barcode: str, pin: str | None, brief: bool) -> None:
    """Look a patron up (63 -> 64, or 23 -> 24 with --brief)."""

    def build(t: _Terminal) -> Message:
        common: dict[str, Any] = {
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
@_PIN
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
@click.argument("item_barcode", required=False)
@click.option("--title", help="Renew by title (AJ) instead of an item barcode.")
@_PIN
@click.pass_context
def renew(
    ctx: click.Context,
    patron_barcode: str,
    item_barcode: str | None,
    title: str | None,
    pin: str | None,
) -> None:
    """Renew one loan, by item barcode or --title (29 -> 30)."""
    if item_barcode is None and title is None:
        raise click.UsageError("give an ITEM_BARCODE or --title")
    _run(
        ctx,
        lambda t: RenewRequest(
            third_party_allowed=False,
            no_block=False,
            transaction_date=_now(),
            nb_due_date=None,
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            patron_password=pin,
            item_identifier=item_barcode,
            title_identifier=title,
            terminal_password=t.terminal_password,
        ),
    )


@sip.command("renew-all")
@click.argument("patron_barcode")
@_PIN
@click.pass_context
def renew_all(ctx: click.Context, patron_barcode: str, pin: str | None) -> None:
    """Renew every loan of a patron (65 -> 66)."""
    _run(
        ctx,
        lambda t: RenewAllRequest(
            transaction_date=_now(),
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            patron_password=pin,
            terminal_password=t.terminal_password,
        ),
    )


@sip.group()
def hold() -> None:
    """Place, cancel or change a hold (15 -> 16)."""


def _hold(
    ctx: click.Context,
    mode: HoldMode,
    patron_barcode: str,
    item_barcode: str | None,
    options: dict[str, Any],
) -> None:
    if item_barcode is None and options.get("title") is None:
        raise click.UsageError("give an ITEM_BARCODE or --title")
    expires = options.get("expires")
    kind = options.get("hold_type")
    _run(
        ctx,
        lambda t: HoldRequest(
            hold_mode=mode,
            transaction_date=_now(),
            # The hold is wanted until the end of that day (BW is a timestamp).
            expiration_date=None
            if expires is None
            else datetime.combine(expires.date(), time(23, 59, 59)),
            pickup_location=options.get("pickup"),
            hold_type=None if kind is None else HoldType(kind),
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            patron_password=options.get("pin"),
            item_identifier=item_barcode,
            title_identifier=options.get("title"),
            terminal_password=t.terminal_password,
        ),
    )


_HOLD_ITEM = click.argument("item_barcode", required=False)
_HOLD_TITLE = click.option("--title", help="The title (AJ) instead of an item.")
_PICKUP = click.option("--pickup", help="Pickup branch code (BS).")


@hold.command("place")
@click.argument("patron_barcode")
@_HOLD_ITEM
@_HOLD_TITLE
@_PICKUP
@click.option(
    "--expires",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Last day the hold is wanted (BW), YYYY-MM-DD.",
)
@click.option(
    "--type",
    "hold_type",
    type=click.Choice([kind.value for kind in HoldType]),
    help="BY: 1 other, 2 any copy of the title, 3 this copy, 4 any copy at a branch.",
)
@_PIN
@click.pass_context
def hold_place(
    ctx: click.Context, /, patron_barcode: str, item_barcode: str | None, **options: Any
) -> None:
    """Place a hold on an item or a title (15 with mode +)."""
    _hold(ctx, HoldMode.ADD, patron_barcode, item_barcode, options)


@hold.command("cancel")
@click.argument("patron_barcode")
@_HOLD_ITEM
@_HOLD_TITLE
@_PIN
@click.pass_context
def hold_cancel(
    ctx: click.Context, /, patron_barcode: str, item_barcode: str | None, **options: Any
) -> None:
    """Cancel a patron's hold on an item or a title (15 with mode -)."""
    _hold(ctx, HoldMode.DELETE, patron_barcode, item_barcode, options)


@hold.command("change")
@click.argument("patron_barcode")
@_HOLD_ITEM
@_HOLD_TITLE
@_PICKUP
@_PIN
@click.pass_context
def hold_change(
    ctx: click.Context, /, patron_barcode: str, item_barcode: str | None, **options: Any
) -> None:
    """Move a patron's hold to another pickup branch (15 with mode *)."""
    _hold(ctx, HoldMode.CHANGE, patron_barcode, item_barcode, options)


def _coded(enum_type: type[enum.Enum], text: str) -> Any:
    """An enum member from its wire code or its name (`04` or `overdue`)."""
    for member in enum_type:
        if text in {member.value, member.name.lower(), member.name}:
            return member
    choices = ", ".join(f"{m.value} {m.name.lower()}" for m in enum_type)
    raise click.BadParameter(f"{text!r} is none of: {choices}")


@sip.command()
@click.argument("patron_barcode")
@click.option("--amount", required=True, help="Amount paid (BV), e.g. 1.50.")
@click.option("--fee-id", help="The fee paid (CG), as 64 lists it; else oldest first.")
@click.option(
    "--currency", default="USD", show_default=True, help="ISO 4217 code (3 letters)."
)
@click.option(
    "--type",
    "fee_type",
    default="01",
    show_default=True,
    help="Fee type, by code or name: 01 other, 03 damage, 04 overdue, ...",
)
@click.option(
    "--payment",
    default="00",
    show_default=True,
    help="Payment type: 00 cash, 01 visa, 02 credit_card.",
)
@click.option("--transaction-id", help="The payment's id (BK), kept by the server.")
@_PIN
@click.pass_context
def pay(  # noqa: PLR0917 - click passes every option by position
    ctx: click.Context,
    patron_barcode: str,
    amount: str,
    fee_id: str | None,
    currency: str,
    fee_type: str,
    payment: str,
    transaction_id: str | None,
    pin: str | None,
) -> None:
    """Pay a fee, a given one or the oldest first (37 -> 38)."""
    if len(currency) != 3:
        raise click.BadParameter(
            "a currency code has 3 letters", param_hint="--currency"
        )
    kind = _coded(FeeType, fee_type)
    paid_by = _coded(PaymentType, payment)
    _run(
        ctx,
        lambda t: FeePaidRequest(
            transaction_date=_now(),
            fee_type=kind,
            payment_type=paid_by,
            currency_type=currency.upper(),
            fee_amount=amount,
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            terminal_password=t.terminal_password,
            patron_password=pin,
            fee_identifier=fee_id,
            transaction_id=transaction_id,
        ),
    )


@sip.command()
@click.argument("patron_barcode")
@click.option(
    "--message", "reason", required=True, help="Why the card is blocked (AL)."
)
@click.option("--card-retained", is_flag=True, help="The terminal kept the card.")
@click.pass_context
def block(
    ctx: click.Context, patron_barcode: str, reason: str, card_retained: bool
) -> None:
    """Block a patron's card, as a terminal does (01 -> 24)."""
    _run(
        ctx,
        lambda t: BlockPatronRequest(
            card_retained=card_retained,
            transaction_date=_now(),
            institution_id=t.institution,
            blocked_card_msg=reason,
            patron_identifier=patron_barcode,
            terminal_password=t.terminal_password,
        ),
    )


@sip.command()
@click.argument("patron_barcode")
@_PIN
@click.pass_context
def enable(ctx: click.Context, patron_barcode: str, pin: str | None) -> None:
    """Lift the blocks terminals placed on a card (25 -> 26)."""
    _run(
        ctx,
        lambda t: PatronEnableRequest(
            transaction_date=_now(),
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            terminal_password=t.terminal_password,
            patron_password=pin,
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


def with_checksum(frame: str, sequence: int) -> str:
    """`frame` with `AY<sequence>AZ<checksum>` appended (SIP2 error detection)."""
    head = f"{frame}AY{sequence}AZ"
    return head + checksum(head.encode("utf-8"))


@sip.command()
@click.argument("frame")
@click.option(
    "--checksum",
    "add_checksum",
    is_flag=True,
    help="Append AY0AZ and the right checksum to FRAME.",
)
@click.pass_context
def raw(ctx: click.Context, frame: str, add_checksum: bool) -> None:
    """Send FRAME as typed (no checksum unless --checksum) and show the reply."""
    terminal: _Terminal = ctx.obj
    out = sys.stdout
    try:
        client = terminal.ready(out)
        text = with_checksum(frame, 0) if add_checksum else frame
        payload = client.exchange(text.encode(client.encoding) + client.terminator)
        show_message(decode(payload, encoding=client.encoding).message, out)
        if terminal.show_wire:
            _show_wire(terminal, out)
        else:
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
        if command is None or words[0] in {"shell", "conform"}:
            click.echo(f"unknown command {words[0]!r}; try: {', '.join(sip.commands)}")
            continue
        try:
            with command.make_context(words[0], words[1:], parent=ctx) as sub:
                command.invoke(sub)
        except click.ClickException as error:
            error.show()
        except click.exceptions.Exit:
            pass


# Options of `ils sip` that become plan variables when given on the command line.
_OPTION_VARIABLES = {
    "login": "login",
    "password": "password",
    "institution": "institution",
    "location": "location",
    "terminal_password": "terminal_password",
}


@sip.command()
@click.option(
    "--plan",
    "plan_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The test plan (TOML), e.g. config/conformance-plan.toml.",
)
@click.option(
    "--var",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a plan variable (over the plan's [variables]); repeatable.",
)
@click.option(
    "--report",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="How to print the report.",
)
@click.pass_context
def conform(
    ctx: click.Context, plan_path: Path, assignments: tuple[str, ...], report: str
) -> None:
    """Run a conformance plan against the server and print a report.

    Each step sends a request and checks the reply (command, fixed fields,
    fields present, absent, equal or matching a pattern, the ok flag). --login,
    --password, --institution, --location and --terminal-password, when given,
    set the variables of the same names. Exit status: 0 when every step passed,
    1 when one failed or was skipped, 2 when the plan itself is wrong.
    """
    from sip2server.conformance import run_plan  # noqa: PLC0415
    from sip2server.conformance_plan import PlanError, load_plan  # noqa: PLC0415

    terminal: _Terminal = ctx.obj
    parent = ctx.parent
    assert parent is not None
    defaults = {"institution": terminal.institution, "location": terminal.location}
    overrides: dict[str, str] = {}
    for option, variable in _OPTION_VARIABLES.items():
        value = parent.params.get(option)
        source = parent.get_parameter_source(option)
        if value and source not in {None, click.core.ParameterSource.DEFAULT}:
            overrides[variable] = str(value)
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        if not equals or not name:
            raise click.BadParameter(
                f"{assignment!r} is not NAME=VALUE", param_hint="--var"
            )
        overrides[name.strip()] = value

    try:
        plan = load_plan(plan_path, overrides, defaults)
    except PlanError as error:
        click.echo(f"Error: {error}", err=True)
        ctx.exit(2)

    base = terminal.client

    def client_for() -> SipClient:
        return SipClient(
            base.host,
            base.port,
            timeout=base.timeout,
            error_detection=base.error_detection,
            encoding=base.encoding,
            terminator=base.terminator,
            tls=base.tls,
            server_hostname=base.server_hostname,
        )

    result = run_plan(plan, client_for, f"{base.host}:{base.port}")
    click.echo(result.to_json() if report == "json" else result.to_text(), nl=False)
    if report == "json":
        click.echo()
    ctx.exit(0 if result.passed else 1)
