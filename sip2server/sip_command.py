"""`ils sip`: a SIP2 test client for troubleshooting a server or a terminal's account.

Layer: `sip2server`. Speaks to any SIP2 server over TCP (or TLS) with the
project's own codec and `SipClient`, prints each reply field by field (the spec's
field names, with their two-letter codes) and, on request, the raw frames with
passwords and PINs masked. It can run a script of commands (`ils sip shell`) or a
conformance plan (`ils sip conform`, see `sip2server.conformance`). The commands
for a patron's account are in `sip2server.sip_patron_commands`, the shell in
`sip2server.sip_shell`, what they share in
`sip2server.sip_terminal`. It must not import `ils`: it talks to servers only over
the wire, like any terminal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from sip2server.client import SipClient, SipClientError
from sip2server.protocol import (
    CheckinRequest,
    CheckoutRequest,
    EndPatronSessionRequest,
    ItemInformationRequest,
    Message,
    PatronInformationRequest,
    PatronStatusRequest,
    ProtocolError,
    ScStatusRequest,
    Summary,
    decode,
    redact_frame,
)
from sip2server.sip_patron_commands import block, enable, hold, pay, renew, renew_all
from sip2server.sip_shell import shell
from sip2server.sip_terminal import (
    PIN_OPTION,
    Terminal,
    connection_lost,
    print_frames,
    run_request,
    show_message,
    terminal_now,
    tls_context,
    with_checksum,
)


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
@click.option(
    "--server-name",
    help="With --tls: the name the server's certificate must carry (default --host).",
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
    server_name: str | None,
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
    if not tls and (ca or cert or key or server_name):
        raise click.UsageError("--ca, --cert, --key and --server-name need --tls")
    client = SipClient(
        host,
        port,
        timeout=timeout,
        error_detection=not no_checksum,
        encoding=encoding,
        terminator=b"\r\n" if crlf else b"\r",
        tls=tls_context(ca, cert, key) if tls else None,
        server_hostname=server_name,
    )
    ctx.call_on_close(client.close)
    ctx.obj = Terminal(
        client=client,
        institution=institution,
        location=location,
        terminal_password=terminal_password,
        show_wire=show_wire,
        login=login,
        password=password,
    )


@sip.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Ask for the server's status (99 -> 98)."""
    run_request(ctx, lambda t: ScStatusRequest(max_print_width=80))


@sip.command()
@click.argument("barcode")
@PIN_OPTION
@click.option(
    "--brief", is_flag=True, help="Patron status (23) instead of information (63)."
)
@click.pass_context
def patron(ctx: click.Context, barcode: str, pin: str | None, brief: bool) -> None:
    """Look a patron up (63 -> 64, or 23 -> 24 with --brief)."""

    def build(t: Terminal) -> Message:
        common: dict[str, Any] = {
            "transaction_date": terminal_now(),
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

    run_request(ctx, build)


@sip.command()
@click.argument("patron_barcode")
@click.argument("item_barcode")
@PIN_OPTION
@click.pass_context
def checkout(
    ctx: click.Context, patron_barcode: str, item_barcode: str, pin: str | None
) -> None:
    """Check an item out to a patron (11 -> 12)."""
    run_request(
        ctx,
        lambda t: CheckoutRequest(
            sc_renewal_policy=True,
            no_block=False,
            transaction_date=terminal_now(),
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
    run_request(
        ctx,
        lambda t: CheckinRequest(
            no_block=False,
            transaction_date=terminal_now(),
            return_date=terminal_now(),
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
    run_request(
        ctx,
        lambda t: ItemInformationRequest(
            transaction_date=terminal_now(),
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
    run_request(
        ctx,
        lambda t: EndPatronSessionRequest(
            transaction_date=terminal_now(),
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            terminal_password=t.terminal_password,
        ),
    )


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
    terminal: Terminal = ctx.obj
    out = sys.stdout
    try:
        client = terminal.ready(out)
        text = with_checksum(frame, 0) if add_checksum else frame
        payload = client.exchange(text.encode(client.encoding) + client.terminator)
        show_message(decode(payload, encoding=client.encoding).message, out)
        if terminal.show_wire:
            print_frames(terminal, out)
        else:
            out.write(f"  wire: {redact_frame(payload, mask_patron=False)}\n")
    except SipClientError as error:
        raise connection_lost(terminal, error) from None
    except ProtocolError as error:
        raise click.ClickException(str(error)) from None


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

    terminal: Terminal = ctx.obj
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


for _command in (renew, renew_all, hold, pay, block, enable, shell):
    sip.add_command(_command)
