"""Fee paid (37/38): a payment at a terminal, for one fee or oldest first.

Layer: `sip2server`. Imports `ils` services and the codec; never Twisted.

CG names the fee (the number a 64 lists first in each AV, and in FE); without
it the payment goes to the oldest open fees first. The currency (the fixed
field of 37) must be the account's policy currency, or the institution's. The
fee type of 37 is not checked: the fee named, or the order of the fees, says
what is paid. BK is kept with the payment and echoed in 38.
"""

from __future__ import annotations

from ils.currency import format_amount, parse_amount
from ils.models import PaymentMethod
from ils.results import CirculationRefused, Refusal
from sip2server.answers.common import Desk, Services, pin_refusal
from sip2server.protocol import FeePaidRequest, FeePaidResponse, PaymentType

_METHODS = {
    PaymentType.CASH: PaymentMethod.CASH,
    PaymentType.VISA: PaymentMethod.CARD,
    PaymentType.CREDIT_CARD: PaymentMethod.CREDIT_CARD,
}


# Fee ids are database keys: the fee table's id is an INTEGER, whose largest
# value on PostgreSQL is 2**31 - 1 (SQLite's is larger). Anything else names
# no fee and must not reach the database, whose driver would fail on it.
LARGEST_FEE_ID = 2**31 - 1


def fee_number(text: str) -> int | None:
    """The fee id CG names, or None when it cannot name one.

    Only ASCII digits count (`str.isdigit` also takes fullwidth and
    superscript digits), and only ids from 1 to LARGEST_FEE_ID; longer text is
    not converted at all.
    """
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 10:
        return None
    number = int(digits)
    return number if 0 < number <= LARGEST_FEE_ID else None


def fee_paid(
    services: Services, desk: Desk, request: FeePaidRequest
) -> FeePaidResponse:
    """Take the payment and say what is still owed."""
    institution = desk.institution(request.institution_id)
    currency = request.currency_type.strip().upper()
    # Nothing is paid, and nothing of the balance told, on a wrong PIN.
    refused = pin_refusal(
        services, desk, request.patron_identifier, request.patron_password or ""
    )
    if refused is not None:
        return FeePaidResponse(
            payment_accepted=False,
            transaction_date=desk.now,
            institution_id=institution,
            patron_identifier=request.patron_identifier,
            transaction_id=request.transaction_id,
            screen_message=(refused,),
        )
    try:
        if services.fees is None:  # pragma: no cover - built with the services
            raise CirculationRefused(Refusal.TRY_AGAIN)
        if desk.policy.currency is not None and currency != desk.policy.currency:
            raise CirculationRefused(Refusal.WRONG_CURRENCY)
        fee_id: int | None = None
        if request.fee_identifier:
            fee_id = fee_number(request.fee_identifier)
            if fee_id is None:
                raise CirculationRefused(Refusal.FEE_NOT_FOUND)
        amount = parse_amount(request.fee_amount, currency)
        receipt = services.fees.pay(
            request.patron_identifier,
            amount,
            currency,
            _METHODS[request.payment_type],
            desk.account.login,
            request.transaction_id or None,
            fee_id,
        )
    except CirculationRefused as refusal:
        return FeePaidResponse(
            payment_accepted=False,
            transaction_date=desk.now,
            institution_id=institution,
            patron_identifier=request.patron_identifier,
            transaction_id=request.transaction_id,
            screen_message=(
                desk.policy.screen_text(refusal.reason.value, refusal.message),
            ),
        )
    paid = format_amount(receipt.amount_minor, receipt.currency)
    owed = format_amount(receipt.owed_minor, receipt.currency)
    screen = [f"Paid {paid} {receipt.currency}; {owed} {receipt.currency} still owed."]
    if receipt.credit_added_minor:
        credit = format_amount(receipt.credit_added_minor, receipt.currency)
        screen.append(f"{credit} {receipt.currency} kept as credit.")
    return FeePaidResponse(
        payment_accepted=True,
        transaction_date=desk.now,
        institution_id=institution,
        patron_identifier=request.patron_identifier,
        transaction_id=receipt.transaction_id or str(receipt.payment_id),
        screen_message=tuple(screen),
    )
