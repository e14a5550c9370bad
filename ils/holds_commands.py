"""`ils holds`: place, cancel, move and change a patron's holds and list them; expire
holds nobody collected, show a title's queue, and list the copies to pull from
the shelves for pending holds.

Layer: `ils`. Imports click and the core; the output goes to the terminal of the
librarian who ran the command. Patron barcodes are shown masked (the last four
characters), as a list on a screen may be seen by others.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import click
import sqlalchemy as sa

from ils.circulation import Circulation
from ils.db import Database
from ils.holds import KEEP, Keep
from ils.models import Branch, Hold, HoldStatus, Patron
from ils.queries import branch_zone
from ils.results import CirculationRefused, HoldView, PullSlip
from ils.rules.commands import db_option, open_database
from ils.staff_commands import refused, staff_name
from ils.text import plural


def _masked(barcode: str | None) -> str:
    if not barcode:
        return "-"
    return "*" * max(len(barcode) - 4, 0) + barcode[-4:]


def _zones(database: Database) -> dict[str, ZoneInfo]:
    """Each branch's time zone by code, for printing times as the branch sees them."""
    with database.read() as session:
        branches = session.scalars(sa.select(Branch)).all()
        return {branch.code: branch_zone(branch) for branch in branches}


def _line(hold: HoldView, zones: Mapping[str, ZoneInfo]) -> str:
    """One hold, its times in its pickup branch's zone. A pending hold past its
    expiry date (not yet ended by `ils holds expire`) is shown as expired."""
    zone = zones.get(hold.pickup_branch_code, ZoneInfo("UTC"))
    today = datetime.now(zone).date()
    state = hold.status.value
    if hold.queue_position is not None:
        state += f" #{hold.queue_position}"
    if (
        hold.status is HoldStatus.PENDING
        and hold.expires_on is not None
        and hold.expires_on < today
    ):
        state = f"expired {hold.expires_on:%Y-%m-%d} (ended at the next expire run)"
    item = f", item {hold.trapped_item_barcode}" if hold.trapped_item_barcode else ""
    deadline = ""
    if hold.pickup_deadline is not None:
        local = hold.pickup_deadline.astimezone(zone)
        deadline = f", collect by {local:%Y-%m-%d %H:%M} {zone.key}"
    return (
        f"hold {hold.hold_id}: {state}, patron"
        f" {_masked(hold.patron_barcode)}, pickup {hold.pickup_branch_code}"
        f"{item}{deadline}, placed {hold.placed_at.astimezone(zone):%Y-%m-%d}"
    )


@click.group("holds")
def holds_group() -> None:
    """Holds: place, cancel, move, change and list a patron's; expire those nobody
    collected; show a title's queue; list the copies to pull."""


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
        zones = _zones(database)
    for hold in expiry.expired:
        click.echo(f"expired {_line(hold, zones)}")
    for hold in expiry.trapped:
        click.echo(f"passed on to {_line(hold, zones)}")
    click.echo(
        f"{plural(len(expiry.expired), 'hold')} expired;"
        f" {plural(len(expiry.trapped), 'item')} passed to the next hold"
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
        zones = _zones(database)
    if not holds:
        click.echo("no open holds on this title")
    for hold in holds:
        click.echo(_line(hold, zones))


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


def _holder(database: Database, hold_id: int) -> str:
    """The barcode of the patron whose hold this is."""
    with database.read() as session:
        barcode = session.scalar(
            sa.select(Patron.barcode)
            .join(Hold, Hold.patron_id == Patron.id)
            .where(Hold.id == hold_id)
        )
    if barcode is None:
        raise click.ClickException(f"no hold {hold_id} of a patron in this library")
    return barcode


@holds_group.command("place")
@click.argument("patron")
@click.option("--item", "item", help="Hold this one copy (item-level).")
@click.option("--title-of", "title_of", help="Hold the title of this copy.")
@click.option("--pickup", required=True, help="The pickup branch's code.")
@click.option(
    "--expires",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The last day the hold is wanted (YYYY-MM-DD).",
)
@db_option
def place_command(
    *,
    patron: str,
    item: str | None,
    title_of: str | None,
    pickup: str,
    expires: datetime | None,
    url: str | None,
) -> None:
    """Place a hold for PATRON on one copy (--item B) or any copy of a title
    (--title-of B), to be picked up at --pickup."""
    if (item is None) == (title_of is None):
        raise click.UsageError("name either --item BARCODE or --title-of BARCODE")
    barcode = item if item is not None else title_of
    with open_database(url) as database:
        hold = refused(
            lambda: Circulation(database).place_hold(
                patron,
                pickup_branch_code=pickup,
                item_barcode=barcode,
                item_level=item is not None,
                expires_on=None if expires is None else expires.date(),
                terminal=staff_name(),
            )
        )
        zones = _zones(database)
    click.echo(f"placed {_line(hold, zones)}, {hold.title}")


@holds_group.command("cancel")
@click.argument("hold_id", type=int)
@db_option
def cancel_command(hold_id: int, url: str | None) -> None:
    """Cancel hold HOLD_ID; a copy waiting for it passes to the next hold."""
    with open_database(url) as database:
        patron = _holder(database, hold_id)
        hold = refused(
            lambda: Circulation(database).cancel_hold(
                patron, hold_id, terminal=staff_name()
            )
        )
        zones = _zones(database)
    click.echo(f"cancelled {_line(hold, zones)}")


@holds_group.command("pickup")
@click.argument("hold_id", type=int)
@click.argument("branch")
@db_option
def pickup_command(hold_id: int, branch: str, url: str | None) -> None:
    """Move hold HOLD_ID to pickup BRANCH (a trapped copy is sent on there)."""
    with open_database(url) as database:
        patron = _holder(database, hold_id)
        hold = refused(
            lambda: Circulation(database).change_hold_pickup(
                patron, hold_id, pickup_branch_code=branch, terminal=staff_name()
            )
        )
        zones = _zones(database)
    click.echo(f"moved {_line(hold, zones)}")


@holds_group.command("change")
@click.argument("hold_id", type=int)
@click.option("--pickup", "pickup", help="The new pickup branch's code.")
@click.option(
    "--expires",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The new last day the hold is wanted (YYYY-MM-DD, the pickup branch's"
    " date); only while no copy is set aside for it.",
)
@click.option(
    "--no-expiry",
    "no_expiry",
    is_flag=True,
    help="Remove the hold's last day: it waits for as long as it takes.",
)
@db_option
def change_command(
    *,
    hold_id: int,
    pickup: str | None,
    expires: datetime | None,
    no_expiry: bool,
    url: str | None,
) -> None:
    """Change hold HOLD_ID: its pickup branch, its last day, or both at once
    (all of it or, if any of it is refused, none of it)."""
    if expires is not None and no_expiry:
        raise click.UsageError("give either --expires DATE or --no-expiry, not both")
    if pickup is None and expires is None and not no_expiry:
        raise click.UsageError("name --pickup BRANCH, --expires DATE or --no-expiry")
    expiry: date | Literal[Keep.KEEP] | None = KEEP
    if no_expiry:
        expiry = None
    elif expires is not None:
        expiry = expires.date()
    with open_database(url) as database:
        patron = _holder(database, hold_id)
        hold = refused(
            lambda: Circulation(database).change_hold(
                patron,
                hold_id,
                pickup_branch_code=pickup,
                expires_on=expiry,
                terminal=staff_name(),
            )
        )
        zones = _zones(database)
    last_day = (
        "no last day"
        if hold.expires_on is None
        else f"wanted until {hold.expires_on:%Y-%m-%d}"
    )
    click.echo(f"changed {_line(hold, zones)}, {last_day}")


@holds_group.command("list")
@click.argument("patron")
@db_option
def list_command(patron: str, url: str | None) -> None:
    """List PATRON's open holds: those ready for pickup, then those pending."""
    with open_database(url) as database:
        holds = refused(lambda: Circulation(database).holds_of(patron))
        zones = _zones(database)
    for hold in holds.available:
        click.echo(f"ready: {_line(hold, zones)}, {hold.title}")
    for hold in holds.pending:
        click.echo(f"pending: {_line(hold, zones)}, {hold.title}")
    click.echo(
        f"{plural(len(holds.available), 'hold')} ready, {len(holds.pending)} pending"
    )
