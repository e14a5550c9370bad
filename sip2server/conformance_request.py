"""Requests of a conformance plan: building the message a step sends from its
`send` name and `fields` table.

Layer: `sip2server`, beside the SIP2 client. Imports only the codec and the
standard library: no `ils`, no Twisted.

Fields are given by attribute name or by two-letter code, with values as they
are written on the wire; required fields a step leaves out get a default, and a
value that waits for a captured variable leaves the message unbuilt until the
step runs. Read by `sip2server.conformance_plan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sip2server.conformance_values import Scope, Where, as_table, substitute
from sip2server.protocol import (
    BlockPatronRequest,
    CheckinRequest,
    CheckoutRequest,
    EndPatronSessionRequest,
    FeePaidRequest,
    FieldKind,
    FieldView,
    HoldRequest,
    ItemInformationRequest,
    ItemStatusUpdateRequest,
    LayoutView,
    LoginRequest,
    Message,
    PatronEnableRequest,
    PatronInformationRequest,
    PatronStatusRequest,
    RenewAllRequest,
    RenewRequest,
    RequestAcsResend,
    ScStatusRequest,
    layout_view,
)

__all__ = ["REQUESTS", "request_message", "request_type"]

#: Requests a step may send, by name (the spec's message names, snake case).
REQUESTS: Mapping[str, type[Message]] = {
    "login": LoginRequest,
    "sc_status": ScStatusRequest,
    "request_acs_resend": RequestAcsResend,
    "patron_status": PatronStatusRequest,
    "patron_information": PatronInformationRequest,
    "checkout": CheckoutRequest,
    "checkin": CheckinRequest,
    "item_information": ItemInformationRequest,
    "item_status_update": ItemStatusUpdateRequest,
    "renew": RenewRequest,
    "renew_all": RenewAllRequest,
    "hold": HoldRequest,
    "fee_paid": FeePaidRequest,
    "block_patron": BlockPatronRequest,
    "patron_enable": PatronEnableRequest,
    "end_patron_session": EndPatronSessionRequest,
}

# Wire values for required fields a step leaves out ("now" is the time of sending).
_DEFAULTS: Mapping[str, str] = {
    "transaction_date": "now",
    "return_date": "now",
    "nb_due_date": "",
    "institution_id": "${institution}",
    "current_location": "${location}",
    "sc_renewal_policy": "Y",
    "no_block": "N",
    "third_party_allowed": "N",
    "card_retained": "N",
    "language": "000",
    "summary": " " * 10,
    "status_code": "0",
    "max_print_width": "080",
    "protocol_version": "2.00",
    "fee_type": "01",
    "payment_type": "00",
    "currency_type": "${currency}",
    "hold_mode": "+",
}
# Optional fields filled in when the variable is set and the step leaves them out.
_IMPLIED: Mapping[str, str] = {
    "location_code": "location",
    "terminal_password": "terminal_password",
}


def request_type(where: Where, key: str, send: Any) -> type[Message]:
    """The request class a step's `send` names, by message name or command code."""
    if not isinstance(send, str):
        raise where.error(
            f"{key}.send",
            "must be a string: a message name (such as 'checkout') or a command code",
        )
    by_code = {request.command: request for request in REQUESTS.values()}
    message_type = REQUESTS.get(send) or by_code.get(send)
    if message_type is None:
        names = ", ".join(REQUESTS)
        raise where.error(f"{key}.send", f"unknown message {send!r} (known: {names})")
    return message_type


def _layout(message: str | type[Message]) -> LayoutView:
    view = layout_view(message)
    assert view is not None, message  # every request and reply has a layout
    return view


# Stands for a field value that waits for a captured variable.
_WAITING = object()


def request_message(
    where: Where,
    key: str,
    send: Any,
    fields: Any,
    scope: Scope,
) -> Message | None:
    """The request a step sends, or None while a value waits for a capture."""
    message_type = request_type(where, key, send)
    layout = _layout(message_type)
    views = {field.name: field for field in (*layout.fixed, *layout.variable)}
    names_by_code = {field.code: field.name for field in layout.variable}

    # attribute name -> (the key as the plan wrote it, the value)
    given: dict[str, tuple[str, Any]] = {}
    for field_key, value in as_table(where, f"{key}.fields", fields).items():
        name = names_by_code.get(field_key, field_key)
        if name not in views:
            raise where.error(
                f"{key}.fields.{field_key}", f"a {send} message has no such field"
            )
        given[name] = (field_key, value)
    for attribute in dataclasses.fields(message_type):
        name = attribute.name
        if name in given or name not in views:
            continue
        required = attribute.default is dataclasses.MISSING and (
            attribute.default_factory is dataclasses.MISSING
        )
        if name in _IMPLIED and _IMPLIED[name] in scope.values:
            given[name] = (name, "${" + _IMPLIED[name] + "}")
        elif required:
            given[name] = (name, _DEFAULTS.get(name, ""))

    values = {
        name: _convert(where, f"{key}.fields.{written}", views[name], value, scope)
        for name, (written, value) in given.items()
    }
    if any(value is _WAITING for value in values.values()):
        return None
    try:
        return message_type(**values)
    except (TypeError, ValueError) as error:  # pragma: no cover - converters check
        raise where.error(f"{key}.fields", str(error)) from error


def _convert(where: Where, key: str, field: FieldView, value: Any, scope: Scope) -> Any:
    if isinstance(value, bool | int):
        return value
    if not isinstance(value, str):
        raise where.error(key, "must be a string (the value as written on the wire)")
    text = substitute(where, key, value, scope)
    if text is None:
        return _WAITING
    if text == "now" and field.kind is FieldKind.DATE:
        # A terminal sends its local time, with no zone (SIP2 dates).
        return datetime.now().replace(microsecond=0)
    try:
        return field.read(text)
    except ValueError as error:
        raise where.error(key, f"{text!r} cannot be sent here: {error}") from error
