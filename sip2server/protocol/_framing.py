"""Cutting a byte stream into SIP2 frames, sans I/O.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

The spec ends every message with CR. Real clients send CR, CRLF or LF (see
docs/sip2-conformance.md), split frames across reads and send several in one, so
the framer keeps a buffer, accepts all three endings and reports each frame with
the ending the client used.
"""

from __future__ import annotations

import dataclasses

_CR = 0x0D
_LF = 0x0A

# A TLS record starts with its content type (0x16, handshake), the major version
# 3 and two more header bytes; the last two give the record's length.
_TLS_HANDSHAKE = 0x16
_TLS_MAJOR_VERSION = 0x03
_TLS_HEADER_LENGTH = 5


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """One frame as received.

    Attributes:
        payload: the bytes before the terminator (for an oversize frame, only
            its first `max_length` bytes).
        terminator: `b"\\r"`, `b"\\r\\n"` or `b"\\n"`, as the client sent it;
            `b""` for a TLS record cut out by its length (see `tls`).
        oversize: the frame ran past `max_length`; its rest was discarded. Answer
            it as `FrameTooLong` (96) instead of decoding it.
        tls: the frame is a TLS handshake record sent to a plain port; answer it
            as `UnexpectedTls` (close) instead of decoding it.
    """

    payload: bytes
    terminator: bytes
    oversize: bool = False
    tls: bool = False


class Framer:
    """Bytes in, whole frames out.

    `feed` returns the frames completed by the new bytes, in order, and keeps any
    incomplete tail for the next call. Empty lines are skipped, so a stray LF
    after a CR-terminated frame (a CRLF split across two reads) is dropped.

    A frame longer than `max_length` is not buffered: the framer keeps its first
    `max_length` bytes, discards the rest up to the next terminator, and then
    returns it flagged `oversize`, so one huge or endless frame costs bounded
    memory and the frames after it are read normally.

    A TLS handshake record at the start of a frame (a TLS client on a plain port)
    is cut out by its own length field, not at CR: a ClientHello contains 0x0D
    bytes, and cutting it there would glue its tail to the next good frame.
    """

    def __init__(self, *, max_length: int = 8192) -> None:
        if max_length < 2:
            raise ValueError("max_length must leave room for a command code")
        self.max_length = max_length
        self._buffer = bytearray()
        self._discarding = False
        self._oversize_prefix = b""
        self._last_terminator = b"\r"

    @property
    def terminator(self) -> bytes:
        """The line ending this peer uses, learnt from the frames seen so far.

        It starts as CR (the spec's), follows the latest frame, and turns a CR into
        CRLF when an LF turns up right after it in a later read. A server
        answering with this ending serves CR-only and CRLF-only clients alike.
        """
        return self._last_terminator

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete frame are waiting for their terminator."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes from the peer and return every frame they complete."""
        self._buffer += data
        frames: list[Frame] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return frames
            if frame.payload or frame.oversize:
                frames.append(frame)

    def _next_frame(self) -> Frame | None:
        buffer = self._buffer

        # A CRLF split between reads leaves an LF at the front: it belongs to the
        # frame before, so drop it and remember that this peer ends with CRLF.
        while buffer[:1] == b"\n" and not self._discarding:
            del buffer[:1]
            if self._last_terminator == b"\r":
                self._last_terminator = b"\r\n"

        # Deviation D15: a TLS record is cut by its length, not at CR.
        if not self._discarding and _starts_tls_record(buffer):
            return self._cut_tls_record()

        end, terminator = _find_terminator(buffer)
        if end < 0:
            self._start_discarding_if_too_long()
            return None

        payload = bytes(buffer[:end])
        del buffer[: end + len(terminator)]
        if self._discarding:
            self._discarding = False
            self._last_terminator = terminator
            prefix, self._oversize_prefix = self._oversize_prefix, b""
            return Frame(payload=prefix, terminator=terminator, oversize=True)
        if len(payload) > self.max_length:
            self._last_terminator = terminator
            return Frame(
                payload=payload[: self.max_length], terminator=terminator, oversize=True
            )
        if payload:
            self._last_terminator = terminator
        return Frame(payload=payload, terminator=terminator)

    def _start_discarding_if_too_long(self) -> None:
        if self._discarding:
            self._buffer.clear()
            return
        if len(self._buffer) > self.max_length:
            # Keep only the start of an endless frame, for the operator's log.
            self._oversize_prefix = bytes(self._buffer[: self.max_length])
            self._buffer.clear()
            self._discarding = True

    def _cut_tls_record(self) -> Frame | None:
        if len(self._buffer) < _TLS_HEADER_LENGTH:
            return None
        length = int.from_bytes(self._buffer[3:5], "big")
        end = _TLS_HEADER_LENGTH + length
        if end > self.max_length:
            # Not plausibly a record we can hold: fall back to CR framing.
            end = min(len(self._buffer), self.max_length)
        elif len(self._buffer) < end:
            return None
        record = bytes(self._buffer[:end])
        del self._buffer[:end]
        return Frame(payload=record, terminator=b"", tls=True)


def _starts_tls_record(buffer: bytearray) -> bool:
    return (
        len(buffer) >= 2
        and buffer[0] == _TLS_HANDSHAKE
        and buffer[1] == _TLS_MAJOR_VERSION
    )


def _find_terminator(buffer: bytearray) -> tuple[int, bytes]:
    """The index where the first frame in `buffer` ends, and its terminator."""
    # Deviation D1 (docs/sip2-conformance.md): the spec ends frames with CR only;
    # LF and CRLF are accepted for Koha's emulator and node-sip2. Permanent: no
    # condition removes it while such clients exist.
    cr = buffer.find(b"\r")
    lf = buffer.find(b"\n")
    if cr < 0 and lf < 0:
        return -1, b""
    if cr < 0 or (0 <= lf < cr):
        return lf, b"\n"
    if cr + 1 < len(buffer) and buffer[cr + 1] == _LF:
        return cr, b"\r\n"
    return cr, b"\r"
