"""`ils holds`: expire holds nobody collected, show a title's queue, and list the
copies to pull from the shelves for pending holds.

Layer: `ils`. Imports click and the core; the output goes to the terminal of the
librarian who ran the command. Patron barcodes are shown masked (the last four
characters), as a list on a screen may be seen by others.
"""

from __future__ import annotations

import click

from ils.circulation import Circulation
from ils.results import CirculationRefused, HoldView, PullSlip
from ils.rules.commands import db_option, open_database
from ils.text import plural


def _masked(barcode: str | None) -> str:
    if not barcode:
        return "-"
    return "*" * max(len(barcode) - 4, 0) + barcode[-4:]


def _line(hold: HoldView) -> str:
    place = "" if hold.queue_position is None else f" #{hold.queue_position}"
    item = f", item {hold.trapped_item_barcode}" if hold.trapped_item_barcode else ""
    deadline = (
        f", collect by {hold.pickup_deadline:%Y-%m-%d %H:%M} UTC"
        if hold.pickup_deadline is not None
        else ""
    )
    return (
        f"hold {hold.hold_id}: {hold.status.value}{place}, patron"
        f" {_masked(hold.patron_barcode)}, pickup {hold.pickup_branch_code}"
        f"{item}{deadline}, placed {hold.placed_at:%Y-%m-%d}"
    )


@click.group("holds")
def holds_group() -> None:
    """Holds: expire those nobody collected, show a title's queue."""


@holds_group.command("expire")
@db_option
def expire_command(url: str | None) -> None:
    """End every hold whose pickup deadline or expiry date has passed.

    Run it once a day (from cron or a systemd timer). An item that was waiting
    for an expired hold passes to the next hold picked up at the same branch;
    otherwise staff clear it from the hold shelf by checking it in.
    """
    with open_database(url) as database:
        expiry = Circulation(database).expire_holds(terminal="ils holds expire")
    for hold in expiry.expired:
        click.echo(f"expired {_line(hold)}")
    for hold in expiry.trapped:
        click.echo(f"passed on to {_line(hold)}")
    click.echo(
        f"{len(expiry.expired)} holds expired; {len(expiry.trapped)} items passed"
        " to the next hold"
    )


@holds_group.command("queue")
@click.argument("item")
@db_option
def queue_command(item: str, url: str | None) -> None:
    """Show the open holds that ITEM (an item barcode) is trapped for or could
    fill: trapped holds first, then the title's queue in order."""
    with open_database(url) as database:
        try:
            holds = Circulation(database).hold_queue(item_barcode=item)
        except CirculationRefused as refusal:
            raise click.ClickException(refusal.message) from None
    if not holds:
        click.echo("no open holds on this title")
    for hold in holds:
        click.echo(_line(hold))


def _slip_line(slip: PullSlip) -> str:
    shelf = (
        " / ".join(part for part in (slip.location, slip.call_number) if part)
        or "no shelf mark"
    )
    return (
        f"{slip.item_barcode}  {slip.title}  [{shelf}] at {slip.shelf_branch_code}"
        f" -> pickup {slip.pickup_branch_code}, hold {slip.hold_id} for"
        f" {_masked(slip.patron_barcode)}, placed {slip.placed_at:%Y-%m-%d}"
    )


@holds_group.command("pull-list")
@click.option(
    "--branch", "branch", default=None, help="Only copies on this branch's shelves."
)
@db_option
def pull_list_command(branch: str | None, url: str | None) -> None:
    """List the copies to take from the open shelves for pending holds: one line
    per hold a copy on the shelf can fill now, in queue order. Check each copy in
    once pulled: that traps it for the hold."""
    with open_database(url) as database:
        try:
            slips = Circulation(database).pull_list(branch)
        except CirculationRefused:
            raise click.ClickException(f"no branch {branch} in this library") from None
    for slip in slips:
        click.echo(_slip_line(slip))
    click.echo(f"{plural(len(slips), 'copy', 'copies')} to pull")
