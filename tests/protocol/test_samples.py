"""Every request in ../shared/sip2/samples.tsv parses, or is refused for its reason.

The samples are real frames from other SIP2 projects and captured clients. The
file is read at run time; without ../shared these tests are skipped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sip2server.protocol import (
    ChecksumMismatch,
    InvalidFieldValue,
    LoginRequest,
    MalformedMessage,
    RemoteProtocolError,
    decode,
    encode,
)

pytestmark = pytest.mark.shared

# Rows that are broken in their source, with the refusal each deserves.
EXPECTED_REFUSALS: dict[str, type[RemoteProtocolError]] = {
    # "990231.23": three characters short of the 99 fixed part.
    "S20": MalformedMessage,
    # "990401.00|...": a two-digit print width shifts the version to ".00|".
    "S37": InvalidFieldValue,
}

# Responses that are malformed in their source (the REQ rows are the contract;
# these are listed so that a change in behaviour is noticed).
MALFORMED_RESPONSES = {
    # 18-character date "201610210000142637": its zone is "0000".
    "S47": "36Y2016102100001426",
}

# S23 is a template: its dates are generated at test time in the source.
TEMPLATE_DATES = {"<txn18>": "20261204    150751", "<txn18+30d>": "20270103    150751"}


@dataclasses.dataclass(frozen=True)
class Sample:
    id: str
    direction: str
    frame: bytes
    checksum_state: str
    notes: str


def load_samples(shared_dir: Path) -> list[Sample]:
    samples = []
    for line in (shared_dir / "sip2" / "samples.tsv").read_text("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        sample_id, direction, text, _source, state, *rest = line.split("\t")
        for placeholder, value in TEMPLATE_DATES.items():
            text = text.replace(placeholder, value)
        # The file notes which rows were checksummed over UTF-8 (S09); the
        # others are latin-1 except S47's cp850 row, which is AZ-INVALID anyway.
        wire = text.encode("utf-8" if sample_id == "S09" else "latin-1")
        samples.append(Sample(sample_id, direction, wire, state, "".join(rest)))
    return samples


@pytest.fixture
def samples(shared_dir: Path) -> list[Sample]:
    """The rows of samples.tsv."""
    return load_samples(shared_dir)


def test_samples_file_has_requests_and_bad_checksums(samples: list[Sample]) -> None:
    """The file still holds what these tests rely on."""
    requests = [s for s in samples if s.direction == "REQ"]
    assert len(requests) >= 50
    assert any(s.checksum_state.startswith("AZ-INVALID") for s in requests)


def test_every_request_parses_or_is_refused_for_its_reason(
    samples: list[Sample],
) -> None:
    """AZ-INVALID rows are checksum mismatches, two broken rows are refused for
    their defect, and every other request decodes and survives a re-encode."""
    problems = []
    for sample in (s for s in samples if s.direction == "REQ"):
        if sample.checksum_state.startswith("AZ-INVALID"):
            expected: type[Exception] | None = ChecksumMismatch
        else:
            expected = EXPECTED_REFUSALS.get(sample.id)
        try:
            decoded = decode(sample.frame)
        except RemoteProtocolError as error:
            if expected is None or not isinstance(error, expected):
                problems.append(f"{sample.id} {sample.frame!r}: {error!r}")
            continue
        if expected is not None:
            problems.append(f"{sample.id} {sample.frame!r}: parsed, wanted {expected}")
            continue

        again = encode(
            decoded.message,
            sequence=decoded.sequence,
            error_detection=decoded.error_detection,
        )
        if decode(again.rstrip(b"\r")).message != decoded.message:
            problems.append(f"{sample.id}: re-encoding changed the message")
    assert [] == problems


def test_alternate_delimiter_is_read_as_one_field(samples: list[Sample]) -> None:
    """FOLIO's `^`-delimited login is not SIP2's `|`: CN swallows the rest."""
    (row,) = [s for s in samples if s.id == "S21"]
    message = decode(row.frame).message
    assert isinstance(message, LoginRequest)
    assert "user_id^COpassw0rd^" == message.login_user_id
    assert "" == message.login_password


def test_checksummed_responses_with_valid_checksums_parse(
    samples: list[Sample],
) -> None:
    """Every literal response whose checksum verifies decodes (the kiosk's side)."""
    problems = []
    for sample in samples:
        if sample.direction != "RESP" or sample.checksum_state != "AZ-valid":
            continue
        try:
            decode(sample.frame)
        except RemoteProtocolError as error:
            problems.append(f"{sample.id} {sample.frame[:40]!r}: {error!r}")
    assert [] == problems


def test_sierra_end_session_with_digit_zone_is_refused(samples: list[Sample]) -> None:
    """Sierra's date zone `0000` is neither blanks nor Z: a precise date error."""
    (row,) = [
        s
        for s in samples
        if s.direction == "RESP"
        and s.frame.startswith(MALFORMED_RESPONSES["S47"].encode())
    ]
    with pytest.raises(InvalidFieldValue) as caught:
        decode(row.frame)
    assert "transaction_date" == caught.value.field
