"""Running a conformance plan against a SIP2 server, and reporting on it.

Layer: `sip2server`, beside the SIP2 client. Imports only the codec, the client,
`sip2server.conformance_plan` and the standard library: no `ils`, no Twisted.

Replies are judged on the raw frame, so a server this codec cannot fully read can
still be checked field by field (and `decodes` says whether it must be
readable). A step that gets no reply in time, or whose connection closes, fails
with that reason; the next step opens a new connection. Frames in the report
have passwords and PINs (CO, AC, AD) masked.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable
from typing import Any

from sip2server.client import SipClient, SipClientError
from sip2server.conformance_plan import OK_FIELDS, Expectation, Plan, Step
from sip2server.protocol import (
    LocalProtocolError,
    ProtocolError,
    checksum,
    decode,
    redact_frame,
)
from sip2server.protocol._layouts import BY_COMMAND

_SECRET_CODES = frozenset({"AC", "AD", "CO"})
_TRAILER_CODES = frozenset({"AY", "AZ"})


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


def run_plan(plan: Plan, client_for: Callable[[], SipClient], server: str) -> Report:
    """Run every step of `plan` in order on connections from `client_for`.

    A step that fails stops the plan when its `on_failure` is "stop"; the steps
    after it are reported as skipped.
    """
    results: list[StepResult] = []
    client: SipClient | None = None
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
            if step.new_connection and client is not None:
                client.close()
                client = None
            result, client = _run_step(step, client, client_for)
            results.append(result)
            if result.outcome == FAIL and step.stop_on_failure:
                stopped_at = step
    finally:
        if client is not None:
            client.close()
    return Report(plan=plan, server=server, results=tuple(results))


def _run_step(
    step: Step, client: SipClient | None, client_for: Callable[[], SipClient]
) -> tuple[StepResult, SipClient | None]:
    try:
        if client is None:
            client = client_for()
            client.connect()
        client.deadline = step.timeout
        client.timeout = step.timeout
        if step.message is not None:
            try:
                client.request(step.message)
            except LocalProtocolError as error:
                reason = f"the plan's request cannot be encoded: {error}"
                return StepResult(step=step, outcome=FAIL, reasons=(reason,)), client
            except ProtocolError:
                pass  # the reply came but does not decode: `judge` says why
        else:
            text = step.raw or ""
            if step.add_checksum:
                # TODO(#5): the sequence is the step's number, not the client's
                # running AY count; a server that checks AY order would object.
                head = f"{text}AY{step.number % 10}AZ"
                text = head + checksum(head.encode(client.encoding))
            client.exchange(text.encode(client.encoding) + client.terminator)
    except SipClientError as error:
        sent = ""
        if client is not None:
            sent = _shown(client.last_request)
            client.close()
        # A late reply on this connection would answer the wrong step: start anew.
        return StepResult(
            step=step, outcome=FAIL, reasons=(str(error),), sent=sent
        ), None

    payload = client.last_reply
    sent = _shown(client.last_request)
    reasons = judge(step.expect, payload, client.encoding)
    return (
        StepResult(
            step=step,
            outcome=FAIL if reasons else PASS,
            reasons=tuple(reasons),
            sent=sent,
            received=_shown(payload),
        ),
        client,
    )


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


def judge(expect: Expectation, payload: bytes, encoding: str = "utf-8") -> list[str]:
    """Why the reply `payload` does not meet `expect` (empty when it does).

    Fixed fields are cut from the frame by the widths of the reply's own layout;
    variable fields are read as `CODE value |` runs, AY and AZ left out.
    """
    if expect.decodes:
        try:
            decode(payload, encoding=encoding)
        except ProtocolError as error:
            return [f"the reply does not decode: {error}"]
    text = payload.decode(encoding, errors="replace")
    command = text[:2]
    if expect.command is not None and command != expect.command:
        return [f"command: expected {expect.command}, got {command or 'nothing'}"]

    layout = BY_COMMAND.get(command)
    fixed: dict[str, str] = {}
    position = 2
    for field in () if layout is None else layout.fixed:
        fixed[field.name] = text[position : position + field.width]
        position += field.width
    fields = _fields(text, position)
    return _reasons(expect, command, fixed, fields)


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
