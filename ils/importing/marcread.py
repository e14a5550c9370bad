"""Reading MARC 21 transmission files (ISO 2709) record by record, surviving damage.

Layer: `ils` (the core). Imports pymarc and the standard library; no database.

A file is split on the record terminator (0x1D), which cannot occur inside a
record in either MARC-8 or UTF-8, so one broken record never hides the ones
after it. Each piece is checked against the length its leader claims; when
stray bytes sit in front of a good record, the good record is found by its
leader and the stray bytes are reported on their own. Bytes after the last
terminator are a record cut short (a half-written file) and are reported, not
parsed.
"""

from __future__ import annotations

import enum
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

from pymarc import Record

RECORD_TERMINATOR = b"\x1d"
LEADER_LENGTH = 24
# Bytes that some systems write between records (line breaks, padding).
_FILLER = b"\r\n\x00 \x1a"
_BLOCK_SIZE = 1 << 16


class MarcEncoding(enum.Enum):
    """How the bytes of a record's data are to be read.

    MARC 21 says so in leader position 9: "a" is UCS/Unicode (UTF-8), blank is
    MARC-8. `AUTO` follows the leader; the others override it for files whose
    leaders lie.
    """

    AUTO = "auto"
    UTF8 = "utf-8"
    MARC8 = "marc8"


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record's bytes as cut from the file.

    Attributes:
        position: the 1-based number of this piece in the file.
        offset: the byte offset in the file where the piece starts.
        data: the bytes, with the record terminator when there was one.
        complete: False for the bytes after the last terminator of a file.
    """

    position: int
    offset: int
    data: bytes
    complete: bool = True


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    """A record decoded from its bytes, or None and why it could not be."""

    raw: RawRecord
    record: Record | None
    problems: tuple[str, ...] = ()


def _claimed_length(data: bytes) -> int | None:
    head = data[:5]
    if len(head) == 5 and head.isdigit():
        return int(head)
    return None


def _find_leader(piece: bytes) -> int:
    """Where a record whose leader claims exactly the rest of `piece` starts, or 0."""
    for start in range(1, len(piece) - LEADER_LENGTH):
        if _claimed_length(piece[start : start + 5]) == len(piece) - start:
            return start
    return 0


def split_records(stream: BinaryIO) -> Iterator[RawRecord]:
    """Cut a MARC transmission file into records, without parsing them.

    Args:
        stream: the file, opened in binary mode; read in blocks, so a file of any
            size takes little memory.

    Yields:
        Each piece in file order. A piece whose leader length is wrong is still
        yielded whole (the parser decides), except that stray bytes in front of a
        well-formed record become a piece of their own.
    """
    position = 0
    offset = 0
    buffer = b""

    def pieces(piece: bytes, piece_offset: int, complete: bool) -> Iterator[RawRecord]:
        nonlocal position
        stripped = piece.lstrip(_FILLER)
        piece_offset += len(piece) - len(stripped)
        if not stripped.rstrip(_FILLER):
            return

        # Stray bytes in front of an intact record: report them, keep the record.
        start = 0
        if complete and _claimed_length(stripped) != len(stripped):
            start = _find_leader(stripped)
        if start:
            position += 1
            yield RawRecord(position, piece_offset, stripped[:start])

        position += 1
        yield RawRecord(position, piece_offset + start, stripped[start:], complete)

    while block := stream.read(_BLOCK_SIZE):
        buffer += block
        *whole, buffer = buffer.split(RECORD_TERMINATOR)
        for piece in whole:
            yield from pieces(piece + RECORD_TERMINATOR, offset, complete=True)
            offset += len(piece) + 1

    yield from pieces(buffer, offset, complete=False)


class _Complaints(logging.Handler):
    """Collects what pymarc logs while one record is decoded."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _pymarc_complaints() -> Iterator[list[str]]:
    """Turn what pymarc warns or logs about a record into a list of messages.

    pymarc logs malformed indicators and warns about odd subfield codes; an
    import reports those against the record instead of letting them reach the
    console unattributed.
    """
    logger = logging.getLogger("pymarc")
    handler = _Complaints()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            messages: list[str] = []
            yield messages
            messages.extend(str(warning.message) for warning in caught)
            messages.extend(handler.messages)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _parse(data: bytes, *, force_utf8: bool, utf8_handling: str) -> Record:
    # hide_utf8_warnings keeps pymarc's MARC-8 decoder from writing to stderr.
    return Record(
        data=data,
        to_unicode=True,
        force_utf8=force_utf8,
        utf8_handling=utf8_handling,
        hide_utf8_warnings=True,
    )


def _describe(error: Exception) -> str:
    detail = str(error)
    name = type(error).__name__
    return f"{name}: {detail}" if detail and detail != name else name


def decode_record(raw: RawRecord, encoding: MarcEncoding) -> DecodedRecord:
    """Decode one record to Unicode, following or overriding leader position 9.

    Invalid UTF-8 does not lose the record: the bad bytes become U+FFFD and the
    record carries a problem saying so. Anything else that stops pymarc (a bad
    leader, directory or base address, no fields) leaves `record` None.
    """
    where = f"at byte {raw.offset}"
    if not raw.complete:
        return DecodedRecord(
            raw,
            None,
            (
                f"the file ends in the middle of a record {where} "
                f"({len(raw.data)} bytes without a record terminator)",
            ),
        )

    data = raw.data
    if encoding is MarcEncoding.MARC8 and len(data) > 9:
        data = data[:9] + b" " + data[10:]
    force_utf8 = encoding is MarcEncoding.UTF8

    problems: list[str] = []
    claimed = _claimed_length(data)
    if claimed is not None and claimed != len(data):
        problems.append(
            f"the leader gives a length of {claimed} but the record has "
            f"{len(data)} bytes"
        )

    with _pymarc_complaints() as complaints:
        record: Record | None
        try:
            try:
                record = _parse(data, force_utf8=force_utf8, utf8_handling="strict")
            except UnicodeDecodeError:
                record = _parse(data, force_utf8=force_utf8, utf8_handling="replace")
                problems.append("invalid UTF-8 was replaced with U+FFFD")
        # pymarc raises its own errors, ValueError, IndexError or UnicodeError on
        # malformed input; whichever it is, this record is lost and the next is not.
        except Exception as error:
            return DecodedRecord(
                raw, None, (f"not a readable MARC record {where} ({_describe(error)})",)
            )
    problems.extend(complaints)

    return DecodedRecord(raw, record, tuple(problems))
