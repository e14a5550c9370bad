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
and the key. Variables and captures are read by `sip2server.conformance_values`,
and the request a step sends is built by `sip2server.conformance_request`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sip2server.conformance_request import (
    REQUESTS,
    request_message,
    request_type,
)
from sip2server.conformance_values import (
    Capture,
    PlanError,
    Scope,
    Where,
    as_flag,
    as_pattern,
    as_table,
    check_keys,
    first_captures,
    read_captures,
    substitute,
    variables_used,
)
from sip2server.protocol import Message, layout_view

__all__ = [
    "OK_FIELDS",
    "REQUESTS",
    "Capture",
    "Expectation",
    "Plan",
    "PlanError",
    "Step",
    "load_plan",
    "resolve_step",
]


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
    where = Where(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise PlanError(f"{path}: cannot read the plan: {error.strerror}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise PlanError(f"{path}: not a valid TOML file: {error}") from error

    check_keys(where, "", document, _PLAN_KEYS)
    header = as_table(where, "plan", document.get("plan", {}))
    check_keys(where, "plan.", header, _HEADER_KEYS)
    timeout = _number(where, "plan.timeout", header.get("timeout", 10.0))
    stop = _on_failure(where, "plan.on_failure", header.get("on_failure", "continue"))
    echo = as_flag(where, "plan.echo_sequence", header.get("echo_sequence", True))

    variables: dict[str, str] = dict(defaults or {})
    for name, value in as_table(
        where, "variables", document.get("variables", {})
    ).items():
        if not isinstance(value, str | int):
            raise where.error(f"variables.{name}", "must be a string or a number")
        variables[name] = str(value)
    variables.update(overrides or {})

    steps_data = document.get("steps")
    if not isinstance(steps_data, list) or not steps_data:
        raise where.error("steps", "the plan needs at least one [[steps]] table")
    captured_by = first_captures(steps_data)
    steps = []
    for number, data in enumerate(steps_data, start=1):
        scope = Scope(
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
    where = Where(plan.path, show_path=False)
    scope = Scope(
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


# The longest a step may wait for its reply: an hour is already far past any
# terminal's patience (and a timeout past what a clock can hold would fail).
_LONGEST_WAIT = 3600.0


def _number(where: Where, key: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= _LONGEST_WAIT
    ):
        raise where.error(
            key, f"must be a number of seconds above 0 and at most {_LONGEST_WAIT:g}"
        )
    return float(value)


def _on_failure(where: Where, key: str, value: Any) -> bool:
    if value not in _ON_FAILURE:
        raise where.error(key, f"must be 'continue' or 'stop', not {value!r}")
    return bool(value == "stop")


def _step(
    where: Where,
    number: int,
    data: Any,
    *,
    scope: Scope,
    timeout: float,
    stop: bool,
    echo: bool,
) -> Step:
    if not isinstance(data, dict):
        raise where.error(f"steps[{number}]", "must be a table")
    name = str(data.get("name", f"step {number}"))
    key = _step_key(number, name)
    check_keys(where, f"{key}.", data, _STEP_KEYS)

    send, raw = data.get("send"), data.get("raw")
    if (send is None) == (raw is None):
        raise where.error(key, "give exactly one of 'send' (a message) or 'raw'")
    add_checksum = as_flag(
        where, f"{key}.add_checksum", data.get("add_checksum", False)
    )
    new_connection = as_flag(
        where, f"{key}.new_connection", data.get("new_connection", False)
    )
    defaults = Expectation(echo_sequence=echo)
    message, raw, expect = _request(where, key, data, scope, defaults)
    command = request_type(where, key, send).command if send is not None else ""
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
        captures=read_captures(where, key, data.get("capture", {}), expect.command),
        waits_for=frozenset(variables_used(data) & scope.captured_before.keys()),
        command=command,
        source=data,
    )


def _sequence(
    where: Where, key: str, data: Mapping[str, Any], command: str, checksummed: bool
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
    where: Where,
    key: str,
    data: Mapping[str, Any],
    scope: Scope,
    defaults: Expectation,
) -> tuple[Message | None, str | None, Expectation]:
    """The message (or raw frame) and the expectation of a step's table."""
    send, raw = data.get("send"), data.get("raw")
    message = None
    if send is not None:
        message = request_message(where, key, send, data.get("fields", {}), scope)
    elif not isinstance(raw, str):
        raise where.error(f"{key}.raw", "must be a string (the frame as typed)")
    else:
        if "\r" in raw or "\n" in raw:
            raise where.error(
                f"{key}.raw",
                "holds a line break, which would end the frame there and send the"
                " rest as a second one: write one frame per step",
            )
        filled = substitute(where, f"{key}.raw", raw, scope)
        raw = raw if filled is None else filled
        if "fields" in data:
            raise where.error(f"{key}.fields", "a raw step takes no fields")
    command = message.command if message is not None else None
    if send is not None and message is None:
        command = request_type(where, key, send).command
    expect = _expectation(
        where,
        f"{key}.expect",
        data.get("expect", {}),
        scope=scope,
        request=command,
        defaults=defaults,
    )
    return message, raw, expect


def _expectation(
    where: Where,
    key: str,
    data: Any,
    *,
    scope: Scope,
    request: str | None,
    defaults: Expectation,
) -> Expectation:
    data = as_table(where, key, data)
    check_keys(where, f"{key}.", data, _EXPECT_KEYS)
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
    decodes = as_flag(where, f"{key}.decodes", data.get("decodes", True))
    echo = as_flag(
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
        patterns[code] = as_pattern(where, f"{key}.match.{code}", text)
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


def _strings(where: Where, key: str, data: Any, scope: Scope) -> dict[str, str]:
    """The table's strings, substituted; a string that waits for a captured
    value is left out here (the step is built again when it runs)."""
    result = {}
    for name, value in as_table(where, key, data).items():
        if not isinstance(value, str):
            raise where.error(f"{key}.{name}", "must be a string")
        text = substitute(where, f"{key}.{name}", value, scope)
        if text is not None:
            result[name] = text
    return result


def _codes(where: Where, key: str, data: Any) -> tuple[str, ...]:
    if not isinstance(data, list) or not all(
        isinstance(code, str) and _CODE.fullmatch(code) for code in data
    ):
        raise where.error(key, "must be a list of two-letter field codes")
    return tuple(data)
