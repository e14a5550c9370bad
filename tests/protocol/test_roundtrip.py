"""Hypothesis round trips: encode then decode is the identity on message values,
and decode then encode of any accepted frame is stable."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sip2server.protocol import Framer, Message, RemoteProtocolError, decode, encode
from sip2server.protocol._fields import (
    Code,
    Date,
    DayMonthYear,
    Flags,
    Number,
    OneZero,
    Text,
    Version,
    YesNo,
)
from sip2server.protocol._layout_types import FieldGroup, Layout
from sip2server.protocol._layouts import LAYOUTS

# Text that the encoder writes unchanged: no delimiter, no control characters.
SAFE_CHARACTERS = st.characters(
    blacklist_categories=("Cc", "Cs"), blacklist_characters="|"
)
SAFE_TEXT = st.text(SAFE_CHARACTERS, max_size=40)
LONG_SAFE_TEXT = st.text(SAFE_CHARACTERS, max_size=255)
DATES = st.datetimes(
    min_value=dt.datetime(1000, 1, 1), max_value=dt.datetime(9999, 12, 31)
).map(lambda value: value.replace(microsecond=0))
ZONED_DATES = st.one_of(
    st.none(), DATES, DATES.map(lambda value: value.replace(tzinfo=dt.UTC))
)
KNOWN_CODES = sorted(
    {field.code for layout in LAYOUTS for field in layout.variable}
    | {field.code for layout in LAYOUTS for g in layout.groups for field in g.fields}
)
# Days as FC (dd.MM.yyyy) writes them: four-digit years.
DAYS = st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31))


def value_strategy(converter: Any, *, fixed: bool, optional: bool) -> Any:
    """Values the field can carry without change through the wire."""
    if isinstance(converter, Flags):
        names = list(converter.flags_type.POSITIONS)
        return st.builds(
            converter.flags_type, **{name: st.booleans() for name in names}
        )
    if isinstance(converter, Date):
        return ZONED_DATES
    if isinstance(converter, DayMonthYear):
        return st.one_of(st.none(), DAYS)
    if isinstance(converter, Code):
        members = st.sampled_from(list(converter.enum_type))
        return members if fixed else st.one_of(st.none(), members)
    if isinstance(converter, Number):
        if fixed:
            return st.integers(0, 10**converter.width - 1)
        return st.one_of(st.none(), st.integers(0, 10**6))
    if isinstance(converter, OneZero):
        return st.booleans()
    if isinstance(converter, YesNo):
        return st.booleans() if fixed else st.one_of(st.none(), st.booleans())
    if isinstance(converter, Version):
        return st.from_regex(r"\A[0-9]\.[0-9][0-9]\Z")
    assert isinstance(converter, Text)
    if converter.width is not None:
        return st.text(
            st.characters(
                min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="|"
            ),
            min_size=converter.width,
            max_size=converter.width,
        )
    if optional:
        # An empty optional-but-required field (AC, AD, AP) reads back as None.
        return st.one_of(st.none(), LONG_SAFE_TEXT.filter(bool))
    return LONG_SAFE_TEXT


def message_strategy(layout: Layout) -> st.SearchStrategy[Message]:
    defaults = {
        field.name: field.default for field in dataclasses.fields(layout.message_type)
    }
    arguments: dict[str, Any] = {}
    for fixed in layout.fixed:
        arguments[fixed.name] = value_strategy(
            fixed.converter, fixed=True, optional=False
        )
    for variable in layout.variable:
        if variable.repeat:
            arguments[variable.name] = st.lists(LONG_SAFE_TEXT, max_size=3).map(tuple)
            continue
        optional = defaults[variable.name] is None
        strategy = value_strategy(variable.converter, fixed=False, optional=optional)
        if optional and variable.required and isinstance(variable.converter, Text):
            arguments[variable.name] = strategy
        elif optional:
            arguments[variable.name] = st.one_of(st.none(), strategy)
        else:
            arguments[variable.name] = strategy
    for group in layout.groups:
        arguments[group.name] = st.lists(group_element_strategy(group), max_size=3).map(
            tuple
        )
    known = {field.code for field in layout.variable} | {"AY", "AZ"}
    known |= {field.code for group in layout.groups for field in group.fields}
    extra_codes = st.from_regex(r"\A[A-Z][A-Z0-9]\Z").filter(lambda c: c not in known)
    arguments["extra_fields"] = st.lists(
        st.tuples(extra_codes, SAFE_TEXT), max_size=3
    ).map(tuple)
    return st.builds(layout.message_type, **arguments)


def group_element_strategy(group: FieldGroup) -> st.SearchStrategy[Any]:
    """Elements of a field group (fee details) that survive the wire unchanged."""
    arguments: dict[str, Any] = {}
    for position, field in enumerate(group.fields):
        if isinstance(field.converter, Text):
            # The first field is written empty for None, so "" reads back as None.
            text = LONG_SAFE_TEXT.filter(bool) if position == 0 else LONG_SAFE_TEXT
            arguments[field.name] = st.one_of(st.none(), text)
        else:
            arguments[field.name] = value_strategy(
                field.converter, fixed=False, optional=True
            )
    return st.builds(group.element_type, **arguments)


MESSAGES = st.one_of([message_strategy(layout) for layout in LAYOUTS])


@settings(max_examples=200, deadline=None)
@given(
    message=MESSAGES,
    sequence=st.one_of(st.none(), st.integers(0, 9)),
    error_detection=st.booleans(),
    terminator=st.sampled_from([b"\r", b"\r\n", b"\n"]),
)
def test_encode_then_decode_gives_back_the_same_message(
    message: Message, sequence: int | None, error_detection: bool, terminator: bytes
) -> None:
    """Any message value survives the wire unchanged, with or without a trailer."""
    if not error_detection:
        sequence = None
    sent_sequence = None if message.command in ("96", "97") else sequence
    frame = encode(
        message,
        sequence=sequence,
        error_detection=error_detection,
        terminator=terminator,
    )
    assert frame.endswith(terminator)
    decoded = decode(frame[: -len(terminator)])
    assert message == decoded.message
    assert sent_sequence == decoded.sequence
    assert error_detection == decoded.error_detection


SEGMENT_CODES = st.one_of(
    st.sampled_from(KNOWN_CODES), st.from_regex(r"\A[A-Z]{2}\Z"), st.just("")
)
SEGMENT_VALUES = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="|\r\n"),
    max_size=30,
)


@st.composite
def liberal_frames(draw: st.DrawFn) -> bytes:
    """A known command's fixed part, then fields in any order and shape."""
    layout = draw(st.sampled_from(LAYOUTS))
    head = encode(draw(message_strategy(layout)))[: 2 + layout.fixed_width]
    segments = draw(st.lists(st.tuples(SEGMENT_CODES, SEGMENT_VALUES), max_size=8))
    body = "|".join(code + value for code, value in segments)
    leading = draw(st.sampled_from(["", "|"]))
    trailing = draw(st.sampled_from(["", "|"]))
    encoding = draw(st.sampled_from(["utf-8", "latin-1"]))
    return head + (leading + body + trailing).encode(encoding, errors="replace")


@settings(max_examples=200, deadline=None)
@given(frame=liberal_frames())
def test_decode_then_encode_of_an_accepted_frame_is_stable(frame: bytes) -> None:
    """Whatever the decoder accepts re-encodes to a frame that re-encodes to itself."""
    try:
        first = encode(decode(frame).message)
    except RemoteProtocolError:
        return
    assert first == encode(decode(first.rstrip(b"\r")).message)


@settings(max_examples=300)
@given(data=st.binary(max_size=80))
def test_decoding_arbitrary_bytes_never_fails_outside_the_error_family(
    data: bytes,
) -> None:
    """Random bytes either decode or raise a RemoteProtocolError, nothing else."""
    with contextlib.suppress(RemoteProtocolError):
        decode(data)


@settings(max_examples=200)
@given(
    frames=st.lists(
        st.binary(min_size=1, max_size=30).filter(
            lambda b: (
                b"\r" not in b and b"\n" not in b and not b.startswith(b"\x16\x03")
            )
        ),
        min_size=1,
        max_size=5,
    ),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_framer_output_does_not_depend_on_how_reads_are_cut(
    frames: list[bytes], cuts: list[int]
) -> None:
    """Cutting the same CR-terminated stream at any points yields the same frames."""
    stream = b"".join(frame + b"\r" for frame in frames)
    points = sorted({0, len(stream), *(cut % (len(stream) + 1) for cut in cuts)})
    framer = Framer()
    received = []
    for start, end in itertools.pairwise(points):
        received.extend(frame.payload for frame in framer.feed(stream[start:end]))
    assert frames == received


def test_empty_repeats_of_a_single_valued_field_do_not_make_re_encoding_drift() -> None:
    """`CI|CI` reads as no CI at all, so re-encoding is stable (found by Hypothesis)."""
    first = encode(decode(b"120NYY" + b" " * 18 + b"CI|CI").message)

    assert b"120NYY" + b" " * 18 + b"AO|AA|AB|AJ|AH|\r" == first
    assert first == encode(decode(first.rstrip(b"\r")).message)


def test_a_value_after_an_empty_single_valued_field_is_the_field_value() -> None:
    """In `CI|CIY` the later, non-empty CI is the value, not an unknown extra."""
    message = decode(b"120NYY" + b" " * 18 + b"CI|CIY").message

    assert message.security_inhibit is True
    assert () == message.extra_fields
