"""Cutting a TCP byte stream into SIP2 frames, whatever the client's habits."""

from __future__ import annotations

import pytest

from sip2server.protocol import Frame, Framer, UnexpectedTls, decode

LOGIN = b"9300CNsipuser|COsippass|CPMAIN|AY0AZF372"
STATUS = b"9900802.00AY1AZFCA0"

# A TLS 1.2 ClientHello as the PyPI sip2 client sends it by default: a handshake
# record (0x16 0x03 0x01, length 0x0031) whose body contains 0x0D bytes.
CLIENT_HELLO = (
    b"\x16\x03\x01\x00\x31"
    + b"\x01\x00\x00\x2d\x03\x03"
    + bytes(range(0x00, 0x20))
    + b"\x00\x02\x13\x01\x01\x00\x00\x02\x0d\x0d"
    + b"\x0d"
)


def payloads(frames: list[Frame]) -> list[bytes]:
    return [frame.payload for frame in frames]


@pytest.mark.parametrize("terminator", [b"\r", b"\r\n", b"\n"])
def test_each_line_ending_ends_a_frame_and_is_reported(terminator: bytes) -> None:
    """CR, CRLF and LF all end a frame, and the frame says which one was used."""
    frames = Framer().feed(LOGIN + terminator)
    assert [Frame(payload=LOGIN, terminator=terminator)] == frames


def test_a_frame_split_across_reads_comes_out_whole() -> None:
    """Bytes without a terminator wait in the framer until the rest arrives."""
    framer = Framer()
    assert [] == framer.feed(LOGIN[:10])
    assert [] == framer.feed(LOGIN[10:])
    assert [LOGIN] == payloads(framer.feed(b"\r"))


def test_pipelined_frames_in_one_read_come_out_in_order() -> None:
    """Several frames in one read are all returned, in the order sent."""
    frames = Framer().feed(LOGIN + b"\r" + STATUS + b"\r\n" + b"35" + b"\n")
    assert [LOGIN, STATUS, b"35"] == payloads(frames)
    assert [b"\r", b"\r\n", b"\n"] == [frame.terminator for frame in frames]


def test_frames_fed_one_byte_at_a_time() -> None:
    """Feeding a CRLF stream one byte per call yields the same frames."""
    framer = Framer()
    stream = LOGIN + b"\r\n" + STATUS + b"\r\n"
    frames: list[Frame] = []
    for byte in stream:
        frames.extend(framer.feed(bytes([byte])))
    assert [LOGIN, STATUS] == payloads(frames)
    assert 0 == framer.buffered


def test_stray_lf_before_the_next_frame_is_skipped() -> None:
    """A CRLF whose LF arrives with the next read does not start a bad frame."""
    framer = Framer()
    assert [LOGIN] == payloads(framer.feed(LOGIN + b"\r"))
    assert [STATUS] == payloads(framer.feed(b"\n" + STATUS + b"\r"))


def test_framer_learns_crlf_from_a_split_crlf() -> None:
    """When an LF follows a CR in a later read, the peer's ending becomes CRLF."""
    framer = Framer()
    framer.feed(LOGIN + b"\r")
    assert b"\r" == framer.terminator
    framer.feed(b"\n")
    assert b"\r\n" == framer.terminator


def test_empty_lines_are_skipped() -> None:
    """Blank lines between frames produce no frames."""
    assert [LOGIN] == payloads(Framer().feed(b"\r\n\r\n" + LOGIN + b"\r\r"))


def test_oversize_frame_is_flagged_and_the_next_frame_is_read() -> None:
    """A frame past max_length comes out flagged oversize, the next one intact."""
    framer = Framer(max_length=32)
    frames = framer.feed(b"17" + b"x" * 100 + b"\r" + STATUS + b"\r")
    assert [True, False] == [frame.oversize for frame in frames]
    assert b"17" + b"x" * 30 == frames[0].payload
    assert STATUS == frames[1].payload


def test_endless_frame_costs_bounded_memory() -> None:
    """Megabytes without a terminator are discarded, not buffered."""
    framer = Framer(max_length=64)
    for _ in range(100):
        assert [] == framer.feed(b"A" * 10_000)
    assert framer.buffered <= 64
    frames = framer.feed(b"\r" + STATUS + b"\r")
    assert [True, False] == [frame.oversize for frame in frames]
    assert b"A" * 64 == frames[0].payload
    assert STATUS == frames[1].payload


def test_tls_client_hello_does_not_poison_the_next_frame() -> None:
    """A ClientHello with CR bytes inside is cut out whole; the next login parses."""
    assert 5 + 0x31 == len(CLIENT_HELLO)
    frames = Framer().feed(CLIENT_HELLO + LOGIN + b"\r")
    assert [True, False] == [frame.tls for frame in frames]
    assert CLIENT_HELLO == frames[0].payload
    assert LOGIN == frames[1].payload


def test_tls_client_hello_split_across_reads_is_still_cut_whole() -> None:
    """A ClientHello that arrives in pieces is held until its record is complete."""
    framer = Framer()
    stream = CLIENT_HELLO + STATUS + b"\r"
    frames: list[Frame] = []
    for byte in stream:
        frames.extend(framer.feed(bytes([byte])))
    assert [CLIENT_HELLO, STATUS] == payloads(frames)


def test_decoding_a_tls_record_asks_to_close() -> None:
    """A TLS record decodes to UnexpectedTls, whose reply is to close."""
    with pytest.raises(UnexpectedTls) as caught:
        decode(CLIENT_HELLO)
    assert "close" == caught.value.reply.value


def test_binary_garbage_without_tls_header_is_resynchronised_at_cr() -> None:
    """Garbage ending in CR becomes one bad frame; the next frame is intact."""
    frames = Framer().feed(b"\x00\xff\xfe garbage\r" + LOGIN + b"\r")
    assert [b"\x00\xff\xfe garbage", LOGIN] == payloads(frames)
