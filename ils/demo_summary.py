"""What `ils demo` prints once the demo library is built: patrons, items, holds
and fees to try.

Layer: `ils` (the core). Imports click, `ils.currency`, `ils.db`, `ils.text` and
`ils.demo_data_tables`; it must not import SQLAlchemy sessions, `ils.demo`,
`ils.circulation` or `ils.fees`.
"""

from __future__ import annotations

import click

from ils.currency import format_amount
from ils.db import display_url
from ils.demo_data_tables import DemoLibrary
from ils.text import plural


def _summary(demo: DemoLibrary) -> None:
    verb = "built" if demo.created else "already present, left as it was"
    click.echo(f"Demo library {verb}: {display_url(demo.url)}")
    click.echo(
        f"Institution {demo.institution_code} (id {demo.institution_id}),"
        f" branches {', '.join(demo.branch_codes)};"
        f" {plural(demo.patron_count, 'patron')}, {plural(demo.record_count, 'title')},"
        f" {plural(demo.item_count, 'item')}."
    )
    click.echo("")
    click.echo("Patrons to try (PINs shown here only because this is a demo):")
    click.echo(f"  {'barcode':<16}{'name':<18}{'category':<10}{'PIN':<6}state")
    for patron in demo.patrons:
        click.echo(
            f"  {patron.barcode:<16}{patron.name:<18}{patron.category:<10}"
            f"{patron.pin or '-':<6}{patron.state}"
        )
    click.echo("")
    click.echo("Items to try (available when the demo was built):")
    for item in demo.items:
        click.echo(f"  {item.barcode:<16}{item.branch:<6}{item.title}")
    if demo.holds:
        click.echo("")
        click.echo("Holds (waiting: on the hold shelf to collect; pending: queued):")
        for hold in demo.holds:
            click.echo(
                f"  {hold.patron_barcode:<16}{hold.item_barcode:<16}"
                f"{hold.pickup_branch:<6}{hold.state:<9}{hold.title}"
            )
    if demo.fees:
        click.echo("")
        click.echo("Fees owed (pay them at a kiosk, or with SIP2's fee paid):")
        for fee in demo.fees:
            amount = format_amount(fee.balance_minor, fee.currency)
            click.echo(
                f"  {fee.patron_barcode:<16}{amount:>8} {fee.currency}"
                f"  {fee.description}"
            )
