"""Conformance plans for `ils sip conform`: reading and checking a plan file.

Layer: `sip2server`, beside the SIP2 client. Imports only the codec and the
standard library: no `ils`, no Twisted (a plan runs against any SIP2 server).

A plan is a TOML file: `[plan]` (name, timeout, on_failure), `[variables]`
(defaults for `${name}` in any string), and ordered `[[steps]]`. A step sends a
request by message name with its fields (`send = "checkout"`, `fields = {...}`,
fields by attribute name or by two-letter code, values as they are written on the
wire) or a frame as typed (`raw = "..."`, optionally `add_checksum = true`), and
lists what the reply must show in `[steps.expect]`. A step may capture fields
of its reply into variables (`[steps.capture]`) that later steps use as
`${name}`; such a step is checked when the plan is read and built again, with
the captured values, when it runs (`resolve_step`). `config/conformance-plan.toml`
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

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CODE = re.compile(r"[A-Z]{2}")
_PLAN_KEYS = frozenset({"plan", "variables", "steps"})
_HEADER_KEYS = frozenset(
    {"name", "description", "timeout", "on_failure", "echo_sequence"}
)
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
        "sequence",
        "capture",
    }
)
_EXPECT_KEYS = frozenset(
    {
        "command",
        "ok",
        "fixed",
        "present",
        "absent",
        "equal",
        "match",
        "decodes",
        "echo_sequence",
    }
)
_CAPTURE_KEYS = frozenset({"field", "index", "pattern", "extension"})
_ON_FAILURE = ("continue", "stop")
# SIP2 2.00: the resend messages carry AZ only, never a sequence number.
_NO_SEQUENCE = frozenset({"96", "97"})

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
    #: The reply must carry back the AY its request carried (SIP2 2.00 error
    #: detection); a 96 is never checked, having no sequence of its own.
    echo_sequence: bool = True


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Capture:
    """One value a step takes from its reply into a variable."""

    #: The variable it sets, used as ${variable} by later steps.
    variable: str
    #: A two-letter field code, or the name of a fixed field.
    field: str
    #: True when `field` names a fixed field.
    fixed: bool = False
    #: Which value of a repeated field (1 is the first); with `pattern`, which
    #: of the values that match it.
    index: int = 1
    #: Keep only values this matches; its group (or the whole match) is taken.
    pattern: re.Pattern[str] | None = None

    def describe(self) -> str:
        """The field as a report names it: `FE`, `AU (value 2)`, `AV matching ...`."""
        text = self.field
        if self.pattern is not None:
            text += f" matching {self.pattern.pattern!r}"
        if self.index != 1:
            text += f" (value {self.index})"
        return text


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One request of a plan and what its reply must show."""

    number: int
    name: str
    #: The request to encode (with the client's checksums), or None for `raw`
    #: and for a step still waiting for captured values.
    message: Message | None
    #: A frame as typed, without terminator; None for `message`. While the
    #: step waits for captured values, the frame with its ${names} unfilled.
    raw: str | None
    add_checksum: bool
    new_connection: bool
    stop_on_failure: bool
    timeout: float
    expect: Expectation
    #: The AY to send instead of the running count (0-9), or None.
    sequence: int | None = None
    captures: tuple[Capture, ...] = ()
    #: Variables captured by earlier steps that this step uses: it is built
    #: again with their values (`resolve_step`) before it runs.
    waits_for: frozenset[str] = frozenset()
    #: The command code of the request.
    command: str = ""
    #: The step's own table, to build it again once captured values are known.
    source: Mapping[str, Any] = dataclasses.field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def request_command(self) -> str:
        """The command code sent (the first two characters of a raw frame)."""
        if self.message is not None:
            return self.message.command
        return self.command or (self.raw or "")[:2]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """A whole plan, its variables substituted and every value checked."""

    path: Path
    name: str
    steps: tuple[Step, ...]
    #: The variables known before the run (defaults, [variables], --var).
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Which step first captures each captured variable.
    captured_by: Mapping[str, int] = dataclasses.field(default_factory=dict)


class _Where:
    """Builds error messages that name the file (unless left out) and the key."""

    def __init__(self, path: Path, *, show_path: bool = True) -> None:
        self.path = path
        self.show_path = show_path

    def error(self, key: str, problem: str) -> PlanError:
        if not self.show_path:
            return PlanError(f"{key}: {problem}")
        return PlanError(f"{self.path}: {key}: {problem}")


@dataclasses.dataclass(frozen=True, slots=True)
class _Scope:
    """The variables a step may use: known ones with their values, and those
    captured by earlier steps (filled in at run time) or by this step or later
    ones (an error to use), each with the step that captures it first."""

    values: Mapping[str, str]
    captured_before: Mapping[str, int]
    captured_later: Mapping[str, int]


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
            variable or one before a step captures it, captures a field the
            reply cannot have, or holds a value the field cannot take.
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
    echo = _flag(where, "plan.echo_sequence", header.get("echo_sequence", True))

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
    captured_by = _captured_by(where, steps_data)
    steps = []
    for number, data in enumerate(steps_data, start=1):
        scope = _Scope(
            values=variables,
            captured_before={n: s for n, s in captured_by.items() if s < number},
            captured_later={n: s for n, s in captured_by.items() if s >= number},
        )
        steps.append(
            _step(
                where,
                number,
                data,
                scope=scope,
                timeout=timeout,
                stop=stop,
                echo=echo,
            )
        )
    name = header.get("name", path.stem)
    return Plan(
        path=path,
        name=str(name),
        steps=tuple(steps),
        variables=variables,
        captured_by=captured_by,
    )


def resolve_step(plan: Plan, step: Step, captured: Mapping[str, str]) -> Step:
    """`step` built again with the values captured so far (and the plan's
    variables for names not captured); a step that waits for nothing is
    returned as it is.

    Raises:
        PlanError: a value cannot be sent in its field; the message names the
            step and the field, not the file.
    """
    if not step.waits_for:
        return step
    where = _Where(plan.path, show_path=False)
    scope = _Scope(
        values={**plan.variables, **captured}, captured_before={}, captured_later={}
    )
    message, raw, expect = _request(
        where, _step_key(step.number, step.name), step.source, scope, step.expect
    )
    return dataclasses.replace(
        step, message=message, raw=raw, expect=expect, waits_for=frozenset()
    )


def _step_key(number: int, name: str) -> str:
    return f"steps[{number}] ({name})"


def _captured_by(where: _Where, steps: list[Any]) -> dict[str, int]:
    """Which step first captures each variable (the capture tables are checked
    in full by `_captures`)."""
    found: dict[str, int] = {}
    for number, data in enumerate(steps, start=1):
        if isinstance(data, dict) and isinstance(data.get("capture"), dict):
            for name in data["capture"]:
                found.setdefault(name, number)
    return found


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


def _flag(where: _Where, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise where.error(key, "must be true or false")
    return value


def _on_failure(where: _Where, key: str, value: Any) -> bool:
    if value not in _ON_FAILURE:
        raise where.error(key, f"must be 'continue' or 'stop', not {value!r}")
    return bool(value == "stop")


def _substitute(where: _Where, key: str, text: str, scope: _Scope) -> str | None:
    """`text` with its ${names} filled in, or None when it uses a variable an
    earlier step captures (known only at run time)."""
    waiting = False

    def value(match: re.Match[str]) -> str:
        nonlocal waiting
        name = match.group(1)
        if name in scope.captured_before:
            waiting = True
            return ""
        if name in scope.values:
            return scope.values[name]
        if name in scope.captured_later:
            raise where.error(
                key,
                f"variable ${{{name}}} is used before any step captures it "
                f"(step {scope.captured_later[name]} is the first to capture it)",
            )
        raise where.error(
            key,
            f"variable ${{{name}}} is not set (give it in [variables], "
            f"with --var {name}=VALUE, or capture it in an earlier step)",
        )

    text = _VARIABLE.sub(value, text)
    return None if waiting else text


def _used(data: Any) -> set[str]:
    """Every ${name} in the strings of a step's table, its captures left out."""
    if isinstance(data, str):
        return set(_VARIABLE.findall(data))
    if isinstance(data, dict):
        return set().union(
            *(_used(value) for key, value in data.items() if key != "capture")
        )
    if isinstance(data, list):
        return set().union(*(_used(value) for value in data))
    return set()


def _step(
    where: _Where,
    number: int,
    data: Any,
    *,
    scope: _Scope,
    timeout: float,
    stop: bool,
    echo: bool,
) -> Step:
    if not isinstance(data, dict):
        raise where.error(f"steps[{number}]", "must be a table")
    name = str(data.get("name", f"step {number}"))
    key = _step_key(number, name)
    _no_unknown_keys(where, f"{key}.", data, _STEP_KEYS)

    send, raw = data.get("send"), data.get("raw")
    if (send is None) == (raw is None):
        raise where.error(key, "give exactly one of 'send' (a message) or 'raw'")
    add_checksum = _flag(where, f"{key}.add_checksum", data.get("add_checksum", False))
    new_connection = _flag(
        where, f"{key}.new_connection", data.get("new_connection", False)
    )
    defaults = Expectation(echo_sequence=echo)
    message, raw, expect = _request(where, key, data, scope, defaults)
    command = _message_type(where, key, send).command if send is not None else ""
    if raw is not None:
        command = raw[:2]
    sequence = _sequence(where, key, data, command, raw is not None and add_checksum)

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
        expect=expect,
        sequence=sequence,
        captures=_captures(where, key, data.get("capture", {}), expect.command),
        waits_for=frozenset(_used(data) & scope.captured_before.keys()),
        command=command,
        source=data,
    )


def _sequence(
    where: _Where, key: str, data: Mapping[str, Any], command: str, checksummed: bool
) -> int | None:
    if "sequence" not in data:
        return None
    value = data["sequence"]
    if isinstance(value, bool) or not isinstance(value, int) or value not in range(10):
        raise where.error(f"{key}.sequence", "must be a digit 0 to 9")
    if "raw" in data and not checksummed:
        raise where.error(
            f"{key}.sequence",
            "a raw frame without add_checksum is sent as typed: write its AY there",
        )
    if command in _NO_SEQUENCE:
        raise where.error(
            f"{key}.sequence", f"a {command} never carries a sequence number"
        )
    return value


def _request(
    where: _Where,
    key: str,
    data: Mapping[str, Any],
    scope: _Scope,
    defaults: Expectation,
) -> tuple[Message | None, str | None, Expectation]:
    """The message (or raw frame) and the expectation of a step's table."""
    send, raw = data.get("send"), data.get("raw")
    message = None
    if send is not None:
        message = _message(where, key, send, data.get("fields", {}), scope)
    elif not isinstance(raw, str):
        raise where.error(f"{key}.raw", "must be a string (the frame as typed)")
    else:
        filled = _substitute(where, f"{key}.raw", raw, scope)
        raw = raw if filled is None else filled
        if "fields" in data:
            raise where.error(f"{key}.fields", "a raw step takes no fields")
    command = message.command if message is not None else None
    if send is not None and message is None:
        command = _message_type(where, key, send).command
    expect = _expectation(
        where,
        f"{key}.expect",
        data.get("expect", {}),
        scope=scope,
        request=command,
        defaults=defaults,
    )
    return message, raw, expect


def _message_type(where: _Where, key: str, send: Any) -> type[Message]:
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


def _message(
    where: _Where,
    key: str,
    send: Any,
    fields: Any,
    scope: _Scope,
) -> Message | None:
    message_type = _message_type(where, key, send)
    layout = _layout(message_type)
    views = {field.name: field for field in (*layout.fixed, *layout.variable)}
    names_by_code = {field.code: field.name for field in layout.variable}

    # attribute name -> (the key as the plan wrote it, the value)
    given: dict[str, tuple[str, Any]] = {}
    for field_key, value in _table(where, f"{key}.fields", fields).items():
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


def _convert(
    where: _Where, key: str, field: FieldView, value: Any, scope: _Scope
) -> Any:
    if isinstance(value, bool | int):
        return value
    if not isinstance(value, str):
        raise where.error(key, "must be a string (the value as written on the wire)")
    text = _substitute(where, key, value, scope)
    if text is None:
        return _WAITING
    if text == "now" and field.kind is FieldKind.DATE:
        # A terminal sends its local time, with no zone (SIP2 dates).
        return datetime.now().replace(microsecond=0)
    try:
        return field.read(text)
    except ValueError as error:
        raise where.error(key, f"{text!r} cannot be sent here: {error}") from error


def _expectation(
    where: _Where,
    key: str,
    data: Any,
    *,
    scope: _Scope,
    request: str | None,
    defaults: Expectation,
) -> Expectation:
    data = _table(where, key, data)
    _no_unknown_keys(where, f"{key}.", data, _EXPECT_KEYS)
    command = data.get("command")
    if command is None and request is not None:
        command = _REPLY_TO.get(request)
    if command is not None and (not isinstance(command, str) or len(command) != 2):
        raise where.error(f"{key}.command", "must be a two-character command code")
    ok = data.get("ok")
    if ok is not None and not isinstance(ok, bool):
        raise where.error(f"{key}.ok", "must be true or false")
    if ok is not None and command is not None and command not in OK_FIELDS:
        raise where.error(f"{key}.ok", f"a {command} reply has no ok flag")
    decodes = _flag(where, f"{key}.decodes", data.get("decodes", True))
    echo = _flag(
        where,
        f"{key}.echo_sequence",
        data.get("echo_sequence", defaults.echo_sequence),
    )

    fixed = _strings(where, f"{key}.fixed", data.get("fixed", {}), scope)
    layout = layout_view(command or "")
    if layout is not None:
        names = {field.name for field in layout.fixed}
        for name in fixed:
            if name not in names:
                raise where.error(
                    f"{key}.fixed.{name}", f"a {command} reply has no such fixed field"
                )
    equal = _strings(where, f"{key}.equal", data.get("equal", {}), scope)
    patterns: dict[str, re.Pattern[str]] = {}
    for code, text in _strings(
        where, f"{key}.match", data.get("match", {}), scope
    ).items():
        patterns[code] = _pattern(where, f"{key}.match.{code}", text)
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
        echo_sequence=echo,
    )


def _pattern(where: _Where, key: str, text: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as error:
        raise where.error(key, f"not a regular expression: {error}") from error


def _strings(where: _Where, key: str, data: Any, scope: _Scope) -> dict[str, str]:
    """The table's strings, substituted; a string that waits for a captured
    value is left out here (the step is built again when it runs)."""
    result = {}
    for name, value in _table(where, key, data).items():
        if not isinstance(value, str):
            raise where.error(f"{key}.{name}", "must be a string")
        text = _substitute(where, f"{key}.{name}", value, scope)
        if text is not None:
            result[name] = text
    return result


def _codes(where: _Where, key: str, data: Any) -> tuple[str, ...]:
    if not isinstance(data, list) or not all(
        isinstance(code, str) and _CODE.fullmatch(code) for code in data
    ):
        raise where.error(key, "must be a list of two-letter field codes")
    return tuple(data)


def _captures(
    where: _Where, key: str, data: Any, command: str | None
) -> tuple[Capture, ...]:
    captures = []
    for variable, written in _table(where, f"{key}.capture", data).items():
        here = f"{key}.capture.{variable}"
        if not _NAME.fullmatch(variable):
            raise where.error(here, "a variable name is letters, digits and _")
        spec = _table(
            where, here, {"field": written} if isinstance(written, str) else written
        )
        _no_unknown_keys(where, f"{here}.", spec, _CAPTURE_KEYS)
        field = spec.get("field")
        if not isinstance(field, str):
            raise where.error(here, "needs a field: a two-letter code or a fixed field")
        index = spec.get("index", 1)
        if isinstance(index, bool) or not isinstance(index, int) or index < 1:
            raise where.error(f"{here}.index", "must be a whole number from 1")
        pattern = None
        if "pattern" in spec:
            if not isinstance(spec["pattern"], str):
                raise where.error(f"{here}.pattern", "must be a string")
            pattern = _pattern(where, f"{here}.pattern", spec["pattern"])
            if pattern.groups > 1:
                raise where.error(
                    f"{here}.pattern", "may hold at most one group (the value taken)"
                )
        extension = _flag(where, f"{here}.extension", spec.get("extension", False))
        fixed = _capture_field(where, here, field, command, extension=extension)
        captures.append(
            Capture(
                variable=variable,
                field=field,
                fixed=fixed,
                index=index,
                pattern=pattern,
            )
        )
    return tuple(captures)


def _capture_field(
    where: _Where, key: str, field: str, command: str | None, *, extension: bool
) -> bool:
    """Whether `field` is a fixed field of the reply; raises when the reply
    cannot have it."""
    if command is None:
        raise where.error(
            key, "the reply's command is not known: set expect.command to capture"
        )
    layout = layout_view(command)
    if extension:
        if not _CODE.fullmatch(field):
            raise where.error(f"{key}.field", "an extension field is a two-letter code")
        return False
    if layout is None:
        raise where.error(
            key,
            f"a {command} reply has no known fields: capture with extension = true",
        )
    if any(view.name == field for view in layout.fixed):
        return True
    if _CODE.fullmatch(field):
        if not any(view.code == field for view in layout.variable):
            codes = " ".join(view.code or "" for view in layout.variable)
            raise where.error(
                f"{key}.field",
                f"a {command} reply has no field {field} (its fields: {codes}; "
                "for another server's own field, add extension = true)",
            )
        return False
    raise where.error(
        f"{key}.field",
        f"a {command} reply has no fixed field {field!r} and it is no field code",
    )
