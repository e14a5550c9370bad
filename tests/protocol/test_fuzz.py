"""A short mutation fuzz of the codec, the Hypothesis twin of bench/fuzz.py.

Golden frames are mutated (bit flips, byte insertions and deletions, field
shuffles, truncations, splices of two frames), fed to a `Framer` in arbitrary
chunks and decoded. Only the codec's `ProtocolError` family may come out of
`decode`, and a message that decodes must encode again under any output option.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from sip2server.protocol import (
    DelimiterPolicy,
    FieldOrder,
    Framer,
    ProtocolError,
    decode,
    encode,
)

from .golden import GOLDEN

SEEDS = sorted(
    {
        wire.encode("utf-8") + trailer
        for _, wire in GOLDEN.values()
        for trailer in (b"", b"|", b"AY1AZ0000")
    }
)
SIGNIFICANT = [b"|", b"\r", b"\n", b"AY", b"AZ", b"\x00", b"\xff", b"\xc3", b" "]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A golden frame changed by one to four mutations."""
    data = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(
            st.sampled_from(["flip", "insert", "delete", "shuffle", "cut", "splice"])
        )
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            index = min(at, len(data) - 1)
            bit = 1 << draw(st.integers(0, 7))
            data = data[:index] + bytes([data[index] ^ bit]) + data[index + 1 :]
        elif kind == "insert":
            piece = draw(
                st.one_of(
                    st.binary(min_size=1, max_size=4), st.sampled_from(SIGNIFICANT)
                )
            )
            data = data[:at] + piece + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 8)) :]
        elif kind == "shuffle":
            head, *rest = data.split(b"|")
            data = b"|".join([head, *draw(st.permutations(rest))])
        elif kind == "cut":
            data = data[:at]
        elif kind == "splice":
            other = draw(st.sampled_from(SEEDS))
            data = data[:at] + other[draw(st.integers(0, len(other))) :]
    return data


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(mutated(), min_size=1, max_size=3),
    ending=st.sampled_from([b"\r", b"\r\n", b"\n"]),
    cuts=st.lists(st.integers(0, 2000), max_size=6),
    encoding=st.sampled_from(["utf-8", "latin-1", "cp850", "ascii"]),
    order=st.sampled_from(list(FieldOrder)),
    policy=st.sampled_from(list(DelimiterPolicy)),
)
def test_mutated_frames_are_decoded_or_refused_with_a_protocol_error(
    frames: list[bytes],
    ending: bytes,
    cuts: list[int],
    encoding: str,
    order: FieldOrder,
    policy: DelimiterPolicy,
) -> None:
    """Framed in any chunks, each mutated frame decodes and re-encodes or is refused."""
    stream = b"".join(frame + ending for frame in frames)
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    framer = Framer(max_length=256)
    payloads = list(frames)
    for start, end in itertools.pairwise(points):
        payloads.extend(frame.payload for frame in framer.feed(stream[start:end]))

    for payload in payloads:
        try:
            decoded = decode(payload, encoding=encoding)
        except ProtocolError:
            continue
        frame = encode(
            decoded.message,
            sequence=decoded.sequence,
            error_detection=decoded.sequence is not None,
            encoding=encoding,
            field_order=order,
            delimiter_policy=policy,
        )
        assert frame.endswith(b"\r")
        assert 1 == frame.count(b"\r")
