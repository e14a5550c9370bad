"""Every request frame in ../shared/sip2/samples.tsv, sent to a running server.

The samples are requests from other SIP2 projects' fixtures and from real
clients, some of them deliberately broken. Each is sent after a fresh login on
one connection; each must get a well-formed reply in time (the response that
belongs to its command, or a 96), and a 99 after it must still get a 98. The
file is read at run time and never copied; without ../shared the test skips.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from sip2server.protocol import ProtocolError, decode
from tests.sip2server.conftest import SipTarget
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    in_thread,
)

pytestmark = pytest.mark.shared

# The file's header: checksums were computed over latin-1 bytes, except these rows.
_ENCODINGS = {"S09": "utf-8", "S47": "cp850"}

# The response code that belongs to each request code (SIP2 2.00); 01, block
# patron, is answered with a patron status 24.
_RESPONSE_TO = {
    "01": "24",
    "09": "10",
    "11": "12",
    "15": "16",
    "17": "18",
    "19": "20",
    "23": "24",
    "25": "26",
    "29": "30",
    "35": "36",
    "37": "38",
    "63": "64",
    "65": "66",
    "93": "94",
    "99": "98",
}

# A 96 to a frame that carried AZ carries AZ too: 9+6+A+Z sums to 0x10A.
_RESEND = (b"96", b"96AZFEF6")


@dataclass(frozen=True)
class Sample:
    """One REQ row of the samples file, as bytes ready to send."""

    row: int
    sample_id: str
    frame: bytes
    checksum_state: str
    notes: str

    @property
    def label(self) -> str:
        """Which row this is, for failure messages."""
        return f"line {self.row} ({self.sample_id}, {self.checksum_state})"


def _fill_template(message: str) -> str:
    # S23 is a FOLIO template whose dates are generated when its test runs.
    now = datetime.now()
    return message.replace(
        "<txn18+30d>", (now + timedelta(days=30)).strftime("%Y%m%d    %H%M%S")
    ).replace("<txn18>", now.strftime("%Y%m%d    %H%M%S"))


def read_requests(path: Path) -> list[Sample]:
    """The REQ rows of samples.tsv, each with the terminator its NOTES give."""
    samples = []
    with path.open(encoding="utf-8", newline="") as file:
        for number, line in enumerate(file, start=1):
            if line.startswith("#") or not line.strip():
                continue
            columns = next(csv.reader([line.rstrip("\n")], delimiter="\t"))
            sample_id, direction, message = columns[0], columns[1], columns[2]
            checksum_state = columns[4] if len(columns) > 4 else ""
            notes = columns[5] if len(columns) > 5 else ""
            if direction != "REQ":
                continue
            ending = b"\r\n" if "CRLF" in notes else b"\r"
            encoding = _ENCODINGS.get(sample_id, "latin-1")
            messages = [message]
            if "<txn18>" in message:
                messages.append(_fill_template(message))
            samples.extend(
                Sample(
                    row=number,
                    sample_id=sample_id,
                    frame=text.encode(encoding) + ending,
                    checksum_state=checksum_state,
                    notes=notes,
                )
                for text in messages
            )
    return samples


def _well_formed_reply(sample: Sample, reply: bytes, last_reply: bytes) -> str | None:
    """Why `reply` is not an acceptable answer to `sample`, or None when it is."""
    if reply in _RESEND:
        return None
    if sample.frame[:2] == b"97":
        # 97 asks for the previous reply again: the 941 of our own login.
        return None if reply == last_reply else f"97 replayed {reply!r}"
    try:
        decoded = decode(reply)
    except ProtocolError as error:
        return f"reply {reply!r} does not decode: {error}"
    expected = _RESPONSE_TO.get(sample.frame[:2].decode("latin-1"))
    if expected is not None and decoded.message.command != expected:
        return f"reply {reply[:2]!r} is not the {expected} that answers this request"
    return None


@pytest_twisted.inlineCallbacks
def test_every_sample_request_gets_a_well_formed_reply(
    sip_target: SipTarget, shared_dir: Path
) -> Any:
    """Each REQ row gets its response or a 96 in time, and a 99 after it gets a 98."""
    samples = read_requests(shared_dir / "sip2" / "samples.tsv")
    assert len(samples) > 40, "the samples file has fewer requests than expected"

    def talk() -> list[tuple[Sample, bytes, bytes]]:
        seen = []
        with RawTerminal(sip_target) as terminal:
            for sample in samples:
                login = terminal.exchange(LOGIN_FRAME)
                assert b"941" == login, (sample.label, login)
                reply = terminal.exchange(sample.frame)
                status = terminal.exchange(STATUS_FRAME)
                seen.append((sample, reply, status))
        return seen

    seen = yield in_thread(talk)

    problems = []
    for sample, reply, status in seen:
        why = _well_formed_reply(sample, reply, b"941")
        if why is not None:
            problems.append(f"{sample.label}: {why}")
        if not status.startswith(b"98"):
            problems.append(f"{sample.label}: the 99 after it got {status!r}")
    assert [] == problems


@pytest_twisted.inlineCallbacks
def test_sample_requests_with_a_wrong_checksum_get_96(
    sip_target: SipTarget, shared_dir: Path
) -> Any:
    """Every REQ row marked AZ-INVALID is answered with 96 (with AZ, as it had one)."""
    samples = [
        sample
        for sample in read_requests(shared_dir / "sip2" / "samples.tsv")
        if sample.checksum_state.startswith("AZ-INVALID")
    ]
    assert samples, "the samples file has no AZ-INVALID requests"

    def talk() -> list[tuple[str, bytes]]:
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            return [
                (sample.label, terminal.exchange(sample.frame)) for sample in samples
            ]

    answers = yield in_thread(talk)

    assert [(label, b"96AZFEF6") for label, _ in answers] == answers
