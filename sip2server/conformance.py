"""Running a conformance plan against a SIP2 server, and reporting on it.

Layer: `sip2server`, beside the SIP2 client. Imports only the codec, the client,
`sip2server.conformance_plan` and the standard library: no `ils`, no Twisted.

Replies are judged on the raw frame, so a server this codec cannot fully read can
still be checked field by field (and `decodes` says whether it must be
readable). A step that gets no reply in time, or whose connection closes, fails
with that reason; the next step opens a new connection. Frames in the report
have passwords and PINs (CO, AC, AD) masked.

Sequence numbers are a terminal's: each message the runner numbers carries the
next AY of its connection, 0 to 9 and round again, starting at 0 on each new
connection (a step's `sequence` sends its own and the count goes on from it);
96 and 97 carry none, and a raw frame without `add_checksum` goes as typed and
leaves the count alone. A reply must echo the AY of its request (the reply to
a 97 that of the request before it). Values a step captures from its reply are
kept by variable name for the later steps that use them.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from sip2server.client import SipClient, SipClientError
from sip2server.conformance_plan import (
    OK_FIELDS,
    Expectation,
    Plan,
    Step,
    resolve_step,
)
from sip2server.conformance_values import Capture, PlanError
from sip2server.protocol import (
    LocalProtocolError,
    ProtocolError,
    checksum,
    decode,
    encode,
    layout_view,
    redact_frame,
)

_SECRET_CODES = frozenset({"AC", "AD", "CO"})
_TRAILER_CODES = frozenset({"AY", "AZ"})
# The resend messages carry no sequence number (SIP2 2.00).
_NO_SEQUENCE = frozenset({"96", "97"})
# The AY of a frame: just before AZ and its four hex digits, or last.
_SEQUENCE = re.compile(r"AY(\d)(?:AZ[0-9A-Fa-f]{4})?\|?$")


class Outcome(enum.Enum):
    """How a step ended."""

    PASSED = "pass"
    FAILED = "fail"
    SKIPPED = "skipped"


PASS, FAIL, SKIPPED = Outcome.PASSED, Outcome.FAILED, Outcome.SKIPPED


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """What one step sent and got, and why it passed or failed."""

    step: Step
    outcome: Outcome
    reasons: tuple[str, ...] = ()
    sent: str = ""
    received: str = ""
    #: The values this step captured from its reply, by variable name.
    captured: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The result as plain data for the JSON report."""
        return {
            "step": self.step.number,
            "name": self.step.name,
            "request": self.step.request_command,
            "expected_reply": self.step.expect.command,
            "outcome": self.outcome.value,
            "reasons": list(self.reasons),
            "sent": self.sent,
            "received": self.received,
            "captured": dict(self.captured),
        }


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """The outcome of a whole plan against one server."""

    plan: Plan
    server: str
    results: tuple[StepResult, ...]

    def count(self, outcome: Outcome) -> int:
        """How many steps had this outcome."""
        return sum(1 for result in self.results if result.outcome == outcome)

    @property
    def passed(self) -> bool:
        """True when every step ran and passed."""
        return all(result.outcome == PASS for result in self.results)

    def to_json(self) -> str:
        """The report as a JSON document."""
        return json.dumps(
            {
                "plan": self.plan.name,
                "file": str(self.plan.path),
                "server": self.server,
                "passed": self.passed,
                "totals": {
                    "steps": len(self.results),
                    "passed": self.count(PASS),
                    "failed": self.count(FAIL),
                    "skipped": self.count(SKIPPED),
                },
                "steps": [result.to_json() for result in self.results],
            },
            indent=2,
        )

    def to_text(self) -> str:
        """The report for a person: one line per step, reasons and frames of
        failures under it, totals last."""
        lines = [f"Plan {self.plan.name!r} ({self.plan.path}) against {self.server}"]
        for result in self.results:
            step = result.step
            arrow = f"{step.request_command} -> {step.expect.command or '?'}"
            label = {PASS: "PASS", FAIL: "FAIL", SKIPPED: "SKIP"}[result.outcome]
            lines.append(f"{label} {step.number:3d} {step.name} ({arrow})")
            lines.extend(
                f"         captured {name} = {value!r}"
                for name, value in result.captured.items()
            )
            if result.outcome == PASS:
                continue
            lines.extend(f"         {reason}" for reason in result.reasons)
            if result.sent:
                lines.append(f"         sent:     {result.sent}")
            if result.received:
                lines.append(f"         received: {result.received}")
        lines.append(
            f"{len(self.results)} steps: {self.count(PASS)} passed, "
            f"{self.count(FAIL)} failed, {self.count(SKIPPED)} skipped"
        )
        return "\n".join(lines) + "\n"


class _Line:
    """The connection steps run on, opened when needed, and its AY count."""

    def __init__(self, client_for: Callable[[], SipClient]) -> None:
        self.client_for = client_for
        self.client: SipClient | None = None
        #: The AY the next numbered message carries.
        self.next_sequence = 0
        #: The AY of the last frame sent on this connection (None: none sent,
        #: or it carried none); the reply to a 97 repeats it.
        self.last_sequence: int | None = None

    def open(self) -> SipClient:
        if self.client is None:
            client = self.client_for()
            client.connect()
            self.client = client
            self.next_sequence, self.last_sequence = 0, None
        return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


def run_plan(plan: Plan, client_for: Callable[[], SipClient], server: str) -> Report:
    """Run every step of `plan` in order on connections from `client_for`.

    A step that fails stops the plan when its `on_failure` is "stop"; the steps
    after it are reported as skipped, as is a step that uses a value no
    earlier step captured.
    """
    results: list[StepResult] = []
    line = _Line(client_for)
    captured: dict[str, str] = {}
    stopped_at: Step | None = None
    try:
        for step in plan.steps:
            if stopped_at is not None:
                results.append(
                    StepResult(
                        step=step,
                        outcome=SKIPPED,
                        reasons=(f"not run: step {stopped_at.number} failed",),
                    )
                )
                continue
            if step.new_connection:
                line.close()
            result = _run_step(plan, step, line, captured)
            captured.update(result.captured)
            results.append(result)
            if result.outcome == FAIL and step.stop_on_failure:
                stopped_at = step
    finally:
        line.close()
    return Report(plan=plan, server=server, results=tuple(results))


def _run_step(
    plan: Plan, step: Step, line: _Line, captured: Mapping[str, str]
) -> StepResult:
    missing = sorted(
        name
        for name in step.waits_for
        if name not in captured and name not in plan.variables
    )
    if missing:
        reasons = tuple(
            f"not run: ${{{name}}} was not captured "
            f"(step {plan.captured_by[name]} captures it)"
            for name in missing
        )
        return StepResult(step=step, outcome=SKIPPED, reasons=reasons)
    breaking = _frame_breakers(step, captured)
    if breaking:
        return StepResult(step=step, outcome=FAIL, reasons=breaking)
    try:
        step = resolve_step(plan, step, captured)
    except PlanError as error:
        reason = f"cannot be sent with the captured values: {error}"
        return StepResult(step=step, outcome=FAIL, reasons=(reason,))

    try:
        client = line.open()
        client.deadline = step.timeout
        client.timeout = step.timeout
        try:
            frame, sequence = _frame(step, line, client)
        except LocalProtocolError as error:
            reason = f"the plan's request cannot be encoded: {error}"
            return StepResult(step=step, outcome=FAIL, reasons=(reason,))
        echoed = line.last_sequence if step.request_command == "97" else sequence
        if step.request_command != "97":
            line.last_sequence = sequence
        payload = client.exchange(frame)
    except SipClientError as error:
        sent = ""
        if line.client is not None:
            sent = _shown(line.client.last_request)
        # A late reply on this connection would answer the wrong step: start anew.
        line.close()
        return StepResult(step=step, outcome=FAIL, reasons=(str(error),), sent=sent)

    failures = judge(step.expect, payload, client.encoding, sequence=echoed)
    values, missed = capture(step.captures, payload, client.encoding)
    failures.extend(missed)
    return StepResult(
        step=step,
        outcome=FAIL if failures else PASS,
        reasons=tuple(failures),
        sent=_shown(client.last_request),
        received=_shown(payload),
        captured=values,
    )


def _frame(step: Step, line: _Line, client: SipClient) -> tuple[bytes, int | None]:
    """The bytes a step sends and the AY they carry; moves the count on.

    Raises:
        LocalProtocolError: the step's message cannot be encoded.
    """
    command = step.request_command
    numbered = command not in _NO_SEQUENCE and (
        step.message is not None or step.add_checksum
    )
    sequence = None
    if numbered and (client.error_detection or step.message is None):
        sequence = line.next_sequence if step.sequence is None else step.sequence
        line.next_sequence = (sequence + 1) % 10
    elif numbered and step.sequence is not None:
        raise LocalProtocolError(
            f"sequence = {step.sequence} needs error detection (not --no-checksums)"
        )

    if step.message is not None:
        frame = encode(
            step.message,
            sequence=sequence,
            error_detection=client.error_detection,
            encoding=client.encoding,
            terminator=client.terminator,
        )
        return frame, sequence
    text = step.raw or ""
    if step.add_checksum:
        head = text + ("AZ" if sequence is None else f"AY{sequence}AZ")
        text = head + checksum(head.encode(client.encoding))
    else:
        typed = _SEQUENCE.search(text)
        sequence = int(typed.group(1)) if typed else None
    return text.encode(client.encoding) + client.terminator, sequence


# What a captured value may not carry into a raw frame: `|` would start a field
# of its own, CR or LF would end the frame early (#5, trial 3 C1).
_BREAKS_A_FRAME = re.compile(r"[|\r\n]")


def _frame_breakers(step: Step, captured: Mapping[str, str]) -> tuple[str, ...]:
    """Why the captured values a raw step splices in would change its frame's
    shape (a `send` step puts each value into its field and cleans it)."""
    if step.raw is None:
        return ()
    reasons = []
    for name in sorted(step.waits_for):
        value = captured.get(name)
        if value is None or f"${{{name}}}" not in step.raw:
            continue
        found = _BREAKS_A_FRAME.search(value)
        if found is not None:
            reasons.append(
                f"not sent: the captured ${{{name}}} = {value!r} holds "
                f"{found.group()!r}, which would change the raw frame's fields or "
                "end it; capture a narrower value (a field or a pattern)"
            )
    return tuple(reasons)


def _shown(frame: bytes) -> str:
    return redact_frame(frame.rstrip(b"\r\n"), mask_patron=False)


def _fields(text: str, start: int) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for segment in text[start:].split("|"):
        code = segment[:2]
        if len(code) == 2 and code not in _TRAILER_CODES:
            fields.setdefault(code, []).append(segment[2:])
    return fields


def _quoted(code: str, value: str) -> str:
    return "'***'" if code in _SECRET_CODES else repr(value)


def _parsed(
    payload: bytes, encoding: str
) -> tuple[str, str, dict[str, str], dict[str, list[str]]]:
    """The reply's text, command, fixed fields (cut by the widths of its own
    layout) and variable fields (`CODE value |` runs, AY and AZ left out)."""
    text = payload.decode(encoding, errors="replace")
    command = text[:2]
    layout = layout_view(command)
    fixed: dict[str, str] = {}
    position = 2
    for field in () if layout is None else layout.fixed:
        width = field.width or 0
        fixed[field.name] = text[position : position + width]
        position += width
    return text, command, fixed, _fields(text, position)


def judge(
    expect: Expectation,
    payload: bytes,
    encoding: str = "utf-8",
    *,
    sequence: int | None = None,
) -> list[str]:
    """Why the reply `payload` does not meet `expect` (empty when it does).

    `sequence` is the AY the reply must carry back (None: not checked); a 96
    is never checked, having no sequence of its own.
    """
    if expect.decodes:
        try:
            decode(payload, encoding=encoding)
        except ProtocolError as error:
            return [f"the reply does not decode: {error}"]
    text, command, fixed, fields = _parsed(payload, encoding)
    if expect.command is not None and command != expect.command:
        return [f"command: expected {expect.command}, got {command or 'nothing'}"]
    reasons = _reasons(expect, command, fixed, fields)
    if sequence is not None and expect.echo_sequence and command not in _NO_SEQUENCE:
        echoed = _SEQUENCE.search(text)
        if echoed is None:
            reasons.append(f"AY: expected {sequence} (the request's), missing")
        elif int(echoed.group(1)) != sequence:
            reasons.append(
                f"AY: expected {sequence} (the request's), got {echoed.group(1)}"
            )
    return reasons


def capture(
    captures: tuple[Capture, ...], payload: bytes, encoding: str = "utf-8"
) -> tuple[dict[str, str], list[str]]:
    """The values `captures` take from the reply `payload`, by variable name,
    and why each one that found nothing failed."""
    values: dict[str, str] = {}
    reasons: list[str] = []
    if not captures:
        return values, reasons
    _, command, fixed, fields = _parsed(payload, encoding)
    for wanted in captures:
        found = fixed.get(wanted.field) if wanted.fixed else None
        candidates = [found] if found is not None else fields.get(wanted.field, [])
        what = f"capture {wanted.variable}: {wanted.describe()}"
        if not candidates:
            reasons.append(f"{what}: the {command} reply has no {wanted.field}")
            continue
        if wanted.pattern is not None:
            matches = [wanted.pattern.search(value) for value in candidates]
            candidates = [
                match.group(1 if wanted.pattern.groups else 0)
                for match in matches
                if match is not None
            ]
        if len(candidates) < wanted.index:
            count = len(candidates)
            reasons.append(
                f"{what}: the {command} reply has {count} such "
                f"value{'s' if count != 1 else ''}, not {wanted.index}"
            )
            continue
        value = candidates[wanted.index - 1]
        if not value.strip():
            reasons.append(f"{what}: the value is empty")
            continue
        values[wanted.variable] = value
    return values, reasons


def _reasons(
    expect: Expectation,
    command: str,
    fixed: dict[str, str],
    fields: dict[str, list[str]],
) -> list[str]:
    reasons: list[str] = []
    if expect.ok is not None:
        reasons.extend(_ok_reasons(expect.ok, command, fixed, fields))
    for name, wanted in expect.fixed.items():
        got = fixed.get(name)
        if got is None:
            reasons.append(f"fixed {name}: a {command} reply has no such field")
        elif got != wanted:
            reasons.append(f"fixed {name}: expected {wanted!r}, got {got!r}")
    for code in expect.present:
        if code not in fields:
            reasons.append(f"{code}: expected present, missing")
    for code in expect.absent:
        if code in fields:
            reasons.append(
                f"{code}: expected absent, got {_quoted(code, fields[code][0])}"
            )
    return reasons + _value_reasons(expect, fields)


def _value_reasons(expect: Expectation, fields: dict[str, list[str]]) -> list[str]:
    reasons: list[str] = []
    for code, wanted in expect.equal.items():
        values = fields.get(code)
        if values is None:
            reasons.append(f"{code}: expected {_quoted(code, wanted)}, missing")
        elif wanted not in values:
            reasons.append(
                f"{code}: expected {_quoted(code, wanted)}, "
                f"got {_quoted(code, values[0])}"
            )
    for code, pattern in expect.match.items():
        values = fields.get(code)
        if values is None:
            reasons.append(f"{code}: expected to match {pattern.pattern!r}, missing")
        elif not any(pattern.search(value) for value in values):
            reasons.append(
                f"{code}: expected to match {pattern.pattern!r}, "
                f"got {_quoted(code, values[0])}"
            )
    return reasons


def _ok_reasons(
    wanted: bool, command: str, fixed: dict[str, str], fields: dict[str, list[str]]
) -> list[str]:
    name = OK_FIELDS.get(command)
    if name is None:
        return [f"ok: a {command} reply has no ok flag"]
    value = fields.get(name, [""])[0] if name == "BL" else fixed.get(name, "")
    ok = value in {"1", "Y", "y"}
    if ok == wanted:
        return []
    flag = "BL" if name == "BL" else name
    return [f"ok: expected {'yes' if wanted else 'no'}, got {flag} {value!r}"]
