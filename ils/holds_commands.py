"""`ils holds`: expire holds nobody collected, and show a title's queue.

Layer: `ils`. Imports click and the core; the output goes to the terminal of the
librarian who ran the command. Patron barcodes are shown masked (the last four
characters), as a list on a screen may be seen by others.
"""

from __future__ import annotations

import click

from ils.circulation import Circulation
from ils.results import CirculationRefused, HoldView
from ils.rules.commands import db_option, open_database


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
