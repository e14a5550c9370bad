"""`ils fees`, `ils patrons` and `ils items`: what staff do at the desk from the
command line: list, charge, take payment for, write off and pay back fees; unlock
a PIN, block and unblock a card; mark an item lost, missing or found.

Layer: `ils`. Imports click and the core; the output goes to the terminal of the
member of staff who ran the command, one line per action (a refusal is one line
with the core's own sentence). Every change is recorded as made by
`staff:<user>`, the operating-system user running the command.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import TypeVar

import click

from ils.currency import format_amount, parse_amount
from ils.db import Database
from ils.fees import FeeService, institution_of
from ils.ledger import FeeView, PaymentReceipt
from ils.models import FeeKind, ItemStatus, PaymentMethod
from ils.queries import item_by_barcode, open_loan, patron_by_barcode
from ils.results import CirculationRefused, Refusal
from ils.rules.commands import db_option, open_database
from ils.staff import StaffDesk
from ils.text import plural

_T = TypeVar("_T")

_MONEY_METHODS = [
    method.value
    for method in PaymentMethod
    if method not in (PaymentMethod.CREDIT, PaymentMethod.WRITE_OFF)
]


def staff_name() -> str:
    """Who is acting, as the log records it: `staff:<operating-system user>`."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"staff:{user}"


def refused(action: Callable[[], _T]) -> _T:
    """Run `action`; a refusal of the core becomes one line and exit status 1."""
    try:
        return action()
    except CirculationRefused as refusal:
        raise click.ClickException(refusal.message) from None
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _currency(database: Database, patron_barcode: str) -> str:
    with database.read() as session:
        patron = patron_by_barcode(session, patron_barcode)
        if patron is None:
            raise CirculationRefused(Refusal.UNKNOWN_PATRON)
        return institution_of(session, patron).currency


def _amount(database: Database, patron_barcode: str, text: str) -> tuple[int, str]:
    currency = _currency(database, patron_barcode)
    return parse_amount(text, currency), currency


def _fee_line(fee: FeeView) -> str:
    money = format_amount(fee.balance_minor, fee.currency)
    whole = format_amount(fee.amount_minor, fee.currency)
    item = f", item {fee.item_barcode}" if fee.item_barcode else ""
    return (
        f"fee {fee.id}: {fee.kind.value} {money} of {whole} {fee.currency} owed,"
        f" {fee.description}{item}, {fee.created_at:%Y-%m-%d}"
    )


def _totals(receipt: PaymentReceipt) -> str:
    currency = receipt.currency
    return (
        f"owes {format_amount(receipt.owed_minor, currency)},"
        f" credit {format_amount(receipt.credit_minor, currency)} {currency}"
    )


# --- ils fees -----------------------------------------------------------------


@click.group("fees")
def fees_group() -> None:
    """A patron's fees: list, charge, pay, write off, pay credit back."""


@fees_group.command("list")
@click.argument("patron")
@click.option("--all", "everything", is_flag=True, help="Include settled fees.")
@db_option
def fees_list_command(patron: str, everything: bool, url: str | None) -> None:
    """List PATRON's open fees (with --all, settled ones too), oldest first."""
    with open_database(url) as database:
        fees = refused(
            lambda: FeeService(database).fees_of(patron, include_settled=everything)
        )
        currency = refused(lambda: _currency(database, patron))
    for fee in fees:
        click.echo(_fee_line(fee))
    owed = sum(fee.balance_minor for fee in fees)
    click.echo(
        f"{plural(len(fees), 'fee')}; {format_amount(owed, currency)} {currency} owed"
    )


@fees_group.command("charge")
@click.argument("patron")
@click.argument("kind", type=click.Choice([kind.value for kind in FeeKind]))
@click.argument("amount")
@click.option("--item", help="The item the fee is for (its barcode).")
@click.option("--note", help="What the fee is for, as the patron will see it.")
@db_option
def fees_charge_command(
    *,
    patron: str,
    kind: str,
    amount: str,
    item: str | None,
    note: str | None,
    url: str | None,
) -> None:
    """Charge PATRON a fee of KIND for AMOUNT (decimal text, e.g. 2.50)."""
    fee_kind = FeeKind(kind)
    with open_database(url) as database:
        minor, currency = refused(lambda: _amount(database, patron, amount))
        fee = refused(
            lambda: FeeService(database).charge(
                patron,
                kind=fee_kind,
                amount_minor=minor,
                description=note or f"{kind.replace('_', ' ')} fee",
                by=staff_name(),
                item_barcode=item,
            )
        )
    click.echo(
        f"charged fee {fee.id}: {kind} {format_amount(minor, currency)} {currency},"
        f" {format_amount(fee.balance_minor, currency)} left to pay after credit"
    )


@fees_group.command("pay")
@click.argument("patron")
@click.argument("amount")
@click.option("--fee", "fee_id", type=int, help="Pay this fee (else oldest first).")
@click.option(
    "--method",
    type=click.Choice(_MONEY_METHODS),
    default=PaymentMethod.CASH.value,
    show_default=True,
)
@db_option
def fees_pay_command(
    patron: str, amount: str, fee_id: int | None, method: str, url: str | None
) -> None:
    """Take a payment of AMOUNT from PATRON: for one fee, or oldest first."""
    with open_database(url) as database:
        minor, currency = refused(lambda: _amount(database, patron, amount))
        receipt = refused(
            lambda: FeeService(database).pay(
                patron,
                minor,
                currency,
                PaymentMethod(method),
                staff_name(),
                None,
                fee_id=fee_id,
            )
        )
    paid = ", ".join(
        f"fee {share.fee_id} {format_amount(share.amount_minor, currency)}"
        for share in receipt.allocations
    )
    kept = (
        f", {format_amount(receipt.credit_added_minor, currency)} kept as credit"
        if receipt.credit_added_minor
        else ""
    )
    click.echo(
        f"paid {format_amount(minor, currency)} {currency} by {method}"
        f" (payment {receipt.payment_id}): {paid or 'no fee'}{kept}; {_totals(receipt)}"
    )


@fees_group.command("write-off")
@click.argument("patron")
@click.option("--fee", "fee_id", type=int, help="Write off this fee (else oldest).")
@click.option("--amount", help="Only this much (decimal text); else all of it.")
@click.option("--note", required=True, help="Why, for the record.")
@db_option
def fees_write_off_command(
    patron: str, fee_id: int | None, amount: str | None, note: str, url: str | None
) -> None:
    """Forgive PATRON's fees (one with --fee, part with --amount), with a note."""
    with open_database(url) as database:
        minor = None
        if amount is not None:
            minor, _currency_code = refused(lambda: _amount(database, patron, amount))
        receipt = refused(
            lambda: FeeService(database).write_off(
                patron, by=staff_name(), note=note, fee_id=fee_id, amount_minor=minor
            )
        )
    currency = receipt.currency
    click.echo(
        f"wrote off {format_amount(receipt.amount_minor, currency)} {currency}"
        f" (payment {receipt.payment_id}) on"
        f" {plural(len(receipt.allocations), 'fee')}; {_totals(receipt)}"
    )


@fees_group.command("refund-credit")
@click.argument("patron")
@click.option(
    "--method",
    type=click.Choice(_MONEY_METHODS),
    default=PaymentMethod.CASH.value,
    show_default=True,
    help="How the money goes back.",
)
@db_option
def fees_refund_credit_command(patron: str, method: str, url: str | None) -> None:
    """Pay PATRON's credit back to them, all of it."""
    with open_database(url) as database:
        receipt = refused(
            lambda: FeeService(database).refund_credit(
                patron, method=PaymentMethod(method), terminal=staff_name()
            )
        )
    currency = receipt.currency
    click.echo(
        f"paid back {format_amount(-receipt.amount_minor, currency)} {currency}"
        f" of credit by {method} (payment {receipt.payment_id}); {_totals(receipt)}"
    )


# --- ils patrons --------------------------------------------------------------


@click.group("patrons")
def patrons_group() -> None:
    """A patron's card: unlock the PIN, block, unblock."""


@patrons_group.command("unlock-pin")
@click.argument("patron")
@db_option
def unlock_pin_command(patron: str, url: str | None) -> None:
    """Lift PATRON's PIN lock and reset the count of wrong PINs."""
    with open_database(url) as database:
        was_locked = refused(
            lambda: StaffDesk(database).unlock_pin(patron, by=staff_name())
        )
    state = "unlocked" if was_locked else "was not locked; wrong-PIN count reset"
    click.echo(f"PIN of {patron} {state}")


@patrons_group.command("block")
@click.argument("patron")
@click.option("--note", required=True, help="Why, for the next member of staff.")
@db_option
def block_command(patron: str, note: str, url: str | None) -> None:
    """Block PATRON from borrowing, with a note."""
    with open_database(url) as database:
        refused(lambda: StaffDesk(database).block(patron, note=note, by=staff_name()))
    click.echo(f"blocked {patron}: {' '.join(note.split())}")


@patrons_group.command("unblock")
@click.argument("patron")
@db_option
def unblock_command(patron: str, url: str | None) -> None:
    """Lift every block on PATRON's card (fee and overdue limits still apply)."""
    with open_database(url) as database:
        lifted = refused(lambda: StaffDesk(database).unblock(patron, by=staff_name()))
    if lifted:
        click.echo(f"unblocked {patron}: {plural(lifted, 'block')} lifted")
    else:
        click.echo(f"{patron} had no block to lift")


# --- ils items ----------------------------------------------------------------


@click.group("items")
def items_group() -> None:
    """An item's status: mark it lost, missing or found."""


def _on_loan(database: Database, barcode: str) -> bool:
    with database.read() as session:
        item = item_by_barcode(session, barcode)
        if item is None:
            raise CirculationRefused(Refusal.UNKNOWN_ITEM)
        return open_loan(session, item) is not None


@items_group.command("mark-lost")
@click.argument("item")
@db_option
def mark_lost_command(item: str, url: str | None) -> None:
    """Mark ITEM lost: on loan, its borrower is billed; on the shelf, no fee."""
    with open_database(url) as database:
        if refused(lambda: _on_loan(database, item)):
            fees = refused(
                lambda: FeeService(database).mark_lost(item, by=staff_name())
            )
            billed = ", ".join(
                f"{fee.kind.value} {format_amount(fee.amount_minor, fee.currency)}"
                f" {fee.currency}"
                for fee in fees
            )
            click.echo(f"{item} marked lost; borrower billed {billed or 'nothing'}")
            return
        change = refused(
            lambda: StaffDesk(database).mark(item, ItemStatus.LOST, by=staff_name())
        )
    click.echo(f"{item} marked lost (was {change.before.value})")


@items_group.command("mark-missing")
@click.argument("item")
@db_option
def mark_missing_command(item: str, url: str | None) -> None:
    """Mark ITEM, not on loan, missing from the shelf."""
    with open_database(url) as database:
        change = refused(
            lambda: StaffDesk(database).mark(item, ItemStatus.MISSING, by=staff_name())
        )
    click.echo(f"{item} marked missing (was {change.before.value})")


@items_group.command("mark-found")
@click.argument("item")
@db_option
def mark_found_command(item: str, url: str | None) -> None:
    """Put a lost or missing ITEM back on the shelf; a lost fee is settled by the
    library's setting. An item still on loan is checked in instead."""
    with open_database(url) as database:
        change = refused(
            lambda: StaffDesk(database).mark(
                item, ItemStatus.AVAILABLE, by=staff_name()
            )
        )
    settled = (
        f"; lost fee of {format_amount(change.settled_minor, change.currency)}"
        f" {change.currency} settled"
        if change.settled_minor
        else ""
    )
    click.echo(f"{item} found (was {change.before.value}){settled}")
