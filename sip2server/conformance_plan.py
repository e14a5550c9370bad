"""Conformance plans for `ils sip conform`: reading and checking a plan file.

Layer: `sip2server`, beside the SIP2 client. Imports only the codec and the
standard library: no `ils`, no Twisted (a plan runs against any SIP2 server).

A plan is a TOML file: `[plan]` (name, timeout, on_failure), `[variables]`
(defaults for `${name}` in any string), and ordered `[[steps]]`. A step sends a
request by message name with its fields (`send = "checkout"`, `fields = {...}`,
fields by attribute name or by two-letter code, values as they are written on the
wire) or a frame as typed (`raw = "..."`, optionally `add_checksum = true`), and
lists what the reply must show in `[steps.expect]`. `config/conformance-plan.toml`
documents every key. Every mistake is a `PlanError` naming the file, the step
and the key.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sip2server.protocol import (
    BlockPatronRequest,
    CheckinRequest,
    CheckoutRequest,
    EndPatronSessionRequest,
    FeePaidRequest,
    HoldRequest,
    ItemInformationRequest,
    ItemStatusUpdateRequest,
    LoginRequest,
    Message,
    PatronEnableRequest,
    PatronInformationRequest,
    PatronStatusRequest,
    RenewAllRequest,
    RenewRequest,
    RequestAcsResend,
    ScStatusRequest,
)

# TODO(#5): the codec exports no public view of its layouts (field names, codes,
# widths, converters), so this reads its private modules, as `ils sip` does.
from sip2server.protocol._fields import Date
from sip2server.protocol._layouts import BY_COMMAND, BY_TYPE

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

# The reply each request expects unless the step says otherwise (97 repeats the
# last reply, whatever it was).
_REPLY_TO: Mapping[str, str | None] = {
    request.command: (
        None
        if request.command == "97"
        else "98"
        if request.command == "99"
        else f"{int(request.command) + 1:02d}"
    )
    for request in REQUESTS.values()
}

# TODO(#5): variables are fixed before the run; a step cannot capture a value
# from a reply (the fee id listed in 64, to pay it in a later 37).
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CODE = re.compile(r"[A-Z]{2}")
_PLAN_KEYS = frozenset({"plan", "variables", "steps"})
_HEADER_KEYS = frozenset({"name", "description", "timeout", "on_failure"})
_STEP_KEYS = frozenset(
    {
        "name",
        "send",
        "raw",
        "add_checksum",
        "fields",
        "expect",
        "timeout",
        "on_failure",
        "new_connection",
    }
)
_EXPECT_KEYS = frozenset(
    {"command", "ok", "fixed", "present", "absent", "equal", "match", "decodes"}
)
_ON_FAILURE = ("continue", "stop")

#: The fixed field that says a reply is positive, per reply command; 24, 26 and
#: 64 have none, so BL (valid patron) stands for it there.
OK_FIELDS: Mapping[str, str] = {
    "94": "ok",
    "10": "ok",
    "12": "ok",
    "16": "ok",
    "30": "ok",
    "66": "ok",
    "38": "payment_accepted",
    "36": "end_session",
    "20": "item_properties_ok",
    "98": "online_status",
    "24": "BL",
    "26": "BL",
    "64": "BL",
}


class PlanError(ValueError):
    """A plan file that cannot be run: the message names the file, step and key."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Expectation:
    """What a step's reply must show; None and empty mean "not checked"."""

    command: str | None = None
    ok: bool | None = None
    fixed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    equal: Mapping[str, str] = dataclasses.field(default_factory=dict)
    match: Mapping[str, re.Pattern[str]] = dataclasses.field(default_factory=dict)
    decodes: bool = True


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One request of a plan and what its reply must show."""

    number: int
    name: str
    #: The request to encode (with the client's checksums), or None for `raw`.
    message: Message | None
    #: A frame as typed, without terminator; None for `message`.
    raw: str | None
    add_checksum: bool
    new_connection: bool
    stop_on_failure: bool
    timeout: float
    expect: Expectation

    @property
    def request_command(self) -> str:
        """The command code sent (the first two characters of a raw frame)."""
        if self.message is not None:
            return self.message.command
        return (self.raw or "")[:2]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A whole plan, its variables substituted and every value checked."""

    path: Path
    name: str
    steps: tuple[Step, ...]


class _Where:
    """Builds error messages that name the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str) -> PlanError:
        return PlanError(f"{self.path}: {key}: {problem}")


def load_plan(
    path: Path,
    overrides: Mapping[str, str] | None = None,
    defaults: Mapping[str, str] | None = None,
) -> Plan:
    """Read the plan at `path`; `overrides` win over its [variables], which win
    over `defaults`.

    Raises:
        PlanError: the file is missing or not TOML, or a key is unknown, of the
            wrong type, names an unknown message or field, uses an undefined
            variable, or holds a value the field cannot take.
    """
    where = _Where(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PlanError(f"{path}: cannot read the plan: {error.strerror}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: not a valid TOML file: {error}") from error

    _no_unknown_keys(where, "", document, _PLAN_KEYS)
    header = _table(where, "plan", document.get("plan", {}))
    _no_unknown_keys(where, "plan.", header, _HEADER_KEYS)
    timeout = _number(where, "plan.timeout", header.get("timeout", 10.0))
    stop = _on_failure(where, "plan.on_failure", header.get("on_failure", "continue"))

    variables: dict[str, str] = dict(defaults or {})
    for name, value in _table(
        where, "variables", document.get("variables", {})
    ).items():
        if not isinstance(value, str | int):
            raise where.error(f"variables.{name}", "must be a string or a number")
        variables[name] = str(value)
    variables.update(overrides or {})

    steps_data = document.get("steps")
    if not isinstance(steps_data, list) or not steps_data:
        raise where.error("steps", "the plan needs at least one [[steps]] table")
    steps = tuple(
        _step(where, number, data, variables=variables, timeout=timeout, stop=stop)
        for number, data in enumerate(steps_data, start=1)
    )
    name = header.get("name", path.stem)
    return Plan(path=path, name=str(name), steps=steps)


def _no_unknown_keys(
    where: _Where, prefix: str, data: Mapping[str, Any], known: frozenset[str]
) -> None:
    for key in data:
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise where.error(f"{prefix}{key}", f"unknown key (known: {allowed})")


def _table(where: _Where, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise where.error(key, "must be a table")
    return value


def _number(where: _Where, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise where.error(key, "must be a number of seconds above 0")
    return float(value)


def _on_failure(where: _Where, key: str, value: Any) -> bool:
    if value not in _ON_FAILURE:
        raise where.error(key, f"must be 'continue' or 'stop', not {value!r}")
    return bool(value == "stop")


def _substitute(
    where: _Where, key: str, text: str, variables: Mapping[str, str]
) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise where.error(
                key,
                f"variable ${{{name}}} is not set (give it in [variables] "
                f"or with --var {name}=VALUE)",
            )
        return variables[name]

    return _VARIABLE.sub(value, text)


def _step(
    where: _Where,
    number: int,
    data: Any,
    *,
    variables: Mapping[str, str],
    timeout: float,
    stop: bool,
) -> Step:
    if not isinstance(data, dict):
        raise where.error(f"steps[{number}]", "must be a table")
    name = str(data.get("name", f"step {number}"))
    key = f"steps[{number}] ({name})"
    _no_unknown_keys(where, f"{key}.", data, _STEP_KEYS)

    send, raw = data.get("send"), data.get("raw")
    if (send is None) == (raw is None):
        raise where.error(key, "give exactly one of 'send' (a message) or 'raw'")
    message = None
    if send is not None:
        message = _message(where, key, send, data.get("fields", {}), variables)
    elif not isinstance(raw, str):
        raise where.error(f"{key}.raw", "must be a string (the frame as typed)")
    else:
        raw = _substitute(where, f"{key}.raw", raw, variables)
        if "fields" in data:
            raise where.error(f"{key}.fields", "a raw step takes no fields")
    add_checksum = data.get("add_checksum", False)
    new_connection = data.get("new_connection", False)
    for flag, value in (
        ("add_checksum", add_checksum),
        ("new_connection", new_connection),
    ):
        if not isinstance(value, bool):
            raise where.error(f"{key}.{flag}", "must be true or false")

    stop_here = stop
    if "on_failure" in data:
        stop_here = _on_failure(where, f"{key}.on_failure", data["on_failure"])
    return Step(
        number=number,
        name=name,
        message=message,
        raw=raw,
        add_checksum=add_checksum and raw is not None,
        new_connection=new_connection,
        stop_on_failure=stop_here,
        timeout=_number(where, f"{key}.timeout", data.get("timeout", timeout)),
        expect=_expectation(
            where, f"{key}.expect", data.get("expect", {}), variables, message
        ),
    )


def _message(
    where: _Where,
    key: str,
    send: Any,
    fields: Any,
    variables: Mapping[str, str],
) -> Message:
    by_code = {request.command: request for request in REQUESTS.values()}
    message_type = REQUESTS.get(send) or by_code.get(send)
    if message_type is None:
        names = ", ".join(REQUESTS)
        raise where.error(f"{key}.send", f"unknown message {send!r} (known: {names})")
    layout = BY_TYPE[message_type]
    converters = {field.name: field.converter for field in layout.fixed}
    converters.update({field.name: field.converter for field in layout.variable})
    names_by_code = {field.code: field.name for field in layout.variable}

    # attribute name -> (the key as the plan wrote it, the value)
    given: dict[str, tuple[str, Any]] = {}
    for field_key, value in _table(where, f"{key}.fields", fields).items():
        name = names_by_code.get(field_key, field_key)
        if name not in converters:
            raise where.error(
                f"{key}.fields.{field_key}", f"a {send} message has no such field"
            )
        given[name] = (field_key, value)
    for attribute in dataclasses.fields(message_type):
        name = attribute.name
        if name in given or name not in converters:
            continue
        required = attribute.default is dataclasses.MISSING and (
            attribute.default_factory is dataclasses.MISSING
        )
        if name in _IMPLIED and _IMPLIED[name] in variables:
            given[name] = (name, "${" + _IMPLIED[name] + "}")
        elif required:
            given[name] = (name, _DEFAULTS.get(name, ""))

    values = {
        name: _convert(
            where, f"{key}.fields.{written}", converters[name], value, variables
        )
        for name, (written, value) in given.items()
    }
    try:
        return message_type(**values)
    except (TypeError, ValueError) as error:  # pragma: no cover - converters check
        raise where.error(f"{key}.fields", str(error)) from error


def _convert(
    where: _Where, key: str, converter: Any, value: Any, variables: Mapping[str, str]
) -> Any:
    if isinstance(value, bool | int):
        return value
    if not isinstance(value, str):
        raise where.error(key, "must be a string (the value as written on the wire)")
    text = _substitute(where, key, value, variables)
    if text == "now" and isinstance(converter, Date):
        # A terminal sends its local time, with no zone (SIP2 dates).
        return datetime.now().replace(microsecond=0)
    try:
        return converter.read(text)
    except ValueError as error:
        raise where.error(key, f"{text!r} cannot be sent here: {error}") from error


def _expectation(
    where: _Where,
    key: str,
    data: Any,
    variables: Mapping[str, str],
    message: Message | None,
) -> Expectation:
    data = _table(where, key, data)
    _no_unknown_keys(where, f"{key}.", data, _EXPECT_KEYS)
    command = data.get("command")
    if command is None and message is not None:
        command = _REPLY_TO.get(message.command)
    if command is not None and (not isinstance(command, str) or len(command) != 2):
        raise where.error(f"{key}.command", "must be a two-character command code")
    ok = data.get("ok")
    if ok is not None and not isinstance(ok, bool):
        raise where.error(f"{key}.ok", "must be true or false")
    if ok is not None and command is not None and command not in OK_FIELDS:
        raise where.error(f"{key}.ok", f"a {command} reply has no ok flag")
    decodes = data.get("decodes", True)
    if not isinstance(decodes, bool):
        raise where.error(f"{key}.decodes", "must be true or false")

    fixed = _strings(where, f"{key}.fixed", data.get("fixed", {}), variables)
    layout = BY_COMMAND.get(command or "")
    if layout is not None:
        names = {field.name for field in layout.fixed}
        for name in fixed:
            if name not in names:
                raise where.error(
                    f"{key}.fixed.{name}", f"a {command} reply has no such fixed field"
                )
    equal = _strings(where, f"{key}.equal", data.get("equal", {}), variables)
    patterns: dict[str, re.Pattern[str]] = {}
    for code, text in _strings(
        where, f"{key}.match", data.get("match", {}), variables
    ).items():
        try:
            patterns[code] = re.compile(text)
        except re.error as error:
            raise where.error(
                f"{key}.match.{code}", f"not a regular expression: {error}"
            ) from error
    present = _codes(where, f"{key}.present", data.get("present", []))
    absent = _codes(where, f"{key}.absent", data.get("absent", []))
    for field_key, code in [
        *((f"equal.{c}", c) for c in equal),
        *((f"match.{c}", c) for c in patterns),
    ]:
        if not _CODE.fullmatch(code):
            raise where.error(f"{key}.{field_key}", "must be a two-letter field code")
    return Expectation(
        command=command,
        ok=ok,
        fixed=fixed,
        present=present,
        absent=absent,
        equal=equal,
        match=patterns,
        decodes=decodes,
    )


def _strings(
    where: _Where, key: str, data: Any, variables: Mapping[str, str]
) -> dict[str, str]:
    result = {}
    for name, value in _table(where, key, data).items():
        if not isinstance(value, str):
            raise where.error(f"{key}.{name}", "must be a string")
        result[name] = _substitute(where, f"{key}.{name}", value, variables)
    return result


def _codes(where: _Where, key: str, data: Any) -> tuple[str, ...]:
    if not isinstance(data, list) or not all(
        isinstance(code, str) and _CODE.fullmatch(code) for code in data
    ):
        raise where.error(key, "must be a list of two-letter field codes")
    return tuple(data)
