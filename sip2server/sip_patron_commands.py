"""`ils sip` commands for a patron's account: renew, renew-all, hold, pay, block
and enable (29, 65, 15, 37, 01 and 25), added to the `ils sip` group.

Layer: `sip2server`, beside the SIP2 client. Imports click, the codec,
`sip2server.sip_terminal` and the standard library; never `ils`.
"""

from __future__ import annotations

import enum
from datetime import datetime, time
from typing import Any

import click

from sip2server.protocol import (
    BlockPatronRequest,
    FeePaidRequest,
    FeeType,
    HoldMode,
    HoldRequest,
    HoldType,
    PatronEnableRequest,
    PaymentType,
    RenewAllRequest,
    RenewRequest,
)
from sip2server.sip_terminal import PIN_OPTION, run_request, terminal_now


@click.command()
@click.argument("patron_barcode")
@click.argument("item_barcode", required=False)
@click.option("--title", help="Renew by title (AJ) instead of an item barcode.")
@PIN_OPTION
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
    run_request(
        ctx,
        lambda t: RenewRequest(
            third_party_allowed=False,
            no_block=False,
            transaction_date=terminal_now(),
            nb_due_date=None,
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            patron_password=pin,
            item_identifier=item_barcode,
            title_identifier=title,
            terminal_password=t.terminal_password,
        ),
    )


@click.command("renew-all")
@click.argument("patron_barcode")
@PIN_OPTION
@click.pass_context
def renew_all(ctx: click.Context, patron_barcode: str, pin: str | None) -> None:
    """Renew every loan of a patron (65 -> 66)."""
    run_request(
        ctx,
        lambda t: RenewAllRequest(
            transaction_date=terminal_now(),
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            patron_password=pin,
            terminal_password=t.terminal_password,
        ),
    )


@click.group()
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
    run_request(
        ctx,
        lambda t: HoldRequest(
            hold_mode=mode,
            transaction_date=terminal_now(),
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
@PIN_OPTION
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
@PIN_OPTION
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
@PIN_OPTION
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


@click.command()
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
@PIN_OPTION
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
    run_request(
        ctx,
        lambda t: FeePaidRequest(
            transaction_date=terminal_now(),
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


@click.command()
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
    run_request(
        ctx,
        lambda t: BlockPatronRequest(
            card_retained=card_retained,
            transaction_date=terminal_now(),
            institution_id=t.institution,
            blocked_card_msg=reason,
            patron_identifier=patron_barcode,
            terminal_password=t.terminal_password,
        ),
    )


@click.command()
@click.argument("patron_barcode")
@PIN_OPTION
@click.pass_context
def enable(ctx: click.Context, patron_barcode: str, pin: str | None) -> None:
    """Lift the blocks terminals placed on a card (25 -> 26)."""
    run_request(
        ctx,
        lambda t: PatronEnableRequest(
            transaction_date=terminal_now(),
            institution_id=t.institution,
            patron_identifier=patron_barcode,
            terminal_password=t.terminal_password,
            patron_password=pin,
        ),
    )
