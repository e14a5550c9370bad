"""The encoder's per-account output options: delimiter policy, field order,
character set with transliteration, and due-date style.

Expected frames are written out by hand from the option's rule; checksums are
recomputed here from the SIP2 rule, independently of the codec.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sip2server.protocol import (
    CheckoutResponse,
    DelimiterPolicy,
    DueDateStyle,
    EndSessionResponse,
    FeePaidRequest,
    FieldOrder,
    LocalProtocolError,
    Message,
    decode,
    encode,
    encoding_problem,
    write_due_date,
)

from .golden import DUE18, GOLDEN, WHEN, WHEN18
from .test_roundtrip import MESSAGES

# The fixed part of every 36 below: end session Y, then the transaction date.
HEAD36 = b"36Y" + WHEN18.encode("ascii")


def end_session(
    *,
    patron: str = "P",
    screen: tuple[str, ...] = (),
    lines: tuple[str, ...] = (),
    extra: tuple[tuple[str, str], ...] = (),
) -> EndSessionResponse:
    """A 36 with institution LIB and the given values."""
    return EndSessionResponse(
        end_session=True,
        transaction_date=WHEN,
        institution_id="LIB",
        patron_identifier=patron,
        screen_message=screen,
        print_line=lines,
        extra_fields=extra,
    )


def az(covered: bytes) -> bytes:
    """SIP2's checksum: the two's complement of the 16-bit byte sum, 4 hex digits."""
    return b"%04X" % (-sum(covered) & 0xFFFF)


# --- what a `|` inside a value becomes ----------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (DelimiterPolicy.SPACE, b"AAa b c|"),
        (DelimiterPolicy.REMOVE, b"AAabc|"),
        (DelimiterPolicy.ENTITY, b"AAa&#124;b&#124;c|"),
    ],
)
def test_delimiter_inside_a_value_follows_the_policy(
    policy: DelimiterPolicy, expected: bytes
) -> None:
    """`a|b|c` is written as `a b c`, `abc` or `a&#124;b&#124;c`."""
    frame = encode(end_session(patron="a|b|c"), delimiter_policy=policy)
    assert HEAD36 + b"AOLIB|" + expected + b"\r" == frame


@pytest.mark.parametrize("policy", list(DelimiterPolicy))
def test_control_characters_become_spaces_whatever_the_policy(
    policy: DelimiterPolicy,
) -> None:
    """CR, LF, NUL and DEL inside a screen message are spaces under every policy."""
    frame = encode(end_session(screen=("a\rb\nc\x00d\x7fe",)), delimiter_policy=policy)
    assert HEAD36 + b"AOLIB|AAP|AFa b c d e|\r" == frame


def test_c1_control_is_a_space_in_ascii_too() -> None:
    """NEL (U+0085) is not ASCII, but as a control it becomes a space, not `?`."""
    frame = encode(end_session(screen=("a\x85b",)), encoding="ascii")
    assert HEAD36 + b"AOLIB|AAP|AFa b|\r" == frame


def test_policy_may_be_given_by_its_configuration_word() -> None:
    """`delimiter_policy="entity"` works like DelimiterPolicy.ENTITY."""
    frame = encode(end_session(patron="x|y"), delimiter_policy="entity")  # type: ignore[arg-type]
    assert b"AAx&#124;y|" in frame


def test_unknown_policy_is_our_own_error() -> None:
    """A policy that is not space, remove or entity is refused, naming the option."""
    with pytest.raises(LocalProtocolError, match="delimiter_policy"):
        encode(end_session(), delimiter_policy="escape")  # type: ignore[arg-type]


def test_cut_to_255_never_splits_an_entity() -> None:
    """254 characters, then `|`: the entity would straddle 255, so it is left out."""
    frame = encode(
        end_session(patron="x" * 254 + "|y"), delimiter_policy=DelimiterPolicy.ENTITY
    )
    assert HEAD36 + b"AOLIB|AA" + b"x" * 254 + b"|\r" == frame


def test_long_screen_message_is_split_before_an_entity() -> None:
    """A split screen message starts its second field with the whole entity."""
    frame = encode(
        end_session(screen=("x" * 254 + "|y",)), delimiter_policy=DelimiterPolicy.ENTITY
    )
    assert (HEAD36 + b"AOLIB|AAP|AF" + b"x" * 254 + b"|AF&#124;y|\r") == frame


def test_removed_delimiters_do_not_count_towards_the_255() -> None:
    """255 letters with one `|` among them still fit in one field when `|` goes."""
    frame = encode(
        end_session(patron="a" * 100 + "|" + "b" * 155),
        delimiter_policy=DelimiterPolicy.REMOVE,
    )
    assert b"AA" + b"a" * 100 + b"b" * 155 + b"|\r" == frame[-259:]


# --- field order ---------------------------------------------------------------------


def test_alphabetical_order_sorts_known_fields_and_keeps_extras_last() -> None:
    """AO AA AF AG become AA AF AG AO; the extra ZZ and AC stay at the end as sent."""
    message = end_session(
        screen=("hi",), lines=("line",), extra=(("ZZ", "z"), ("AC", "c"))
    )
    frame = encode(message, field_order=FieldOrder.ALPHABETICAL)
    assert HEAD36 + b"AAP|AFhi|AGline|AOLIB|ZZz|ACc|\r" == frame


def test_spec_order_is_the_default() -> None:
    """Without the option, fields follow the spec's table: AO AA AF AG, then extras."""
    message = end_session(screen=("hi",), lines=("line",), extra=(("ZZ", "z"),))
    assert HEAD36 + b"AOLIB|AAP|AFhi|AGline|ZZz|\r" == encode(message)


def test_alphabetical_checkout_response() -> None:
    """A 12 sorted: AA AB AH AJ AO CK instead of AO AA AB AJ AH CK."""
    message, _ = GOLDEN["12 checkout response"]
    expected = (
        "121NNY" + WHEN18 + "AA21234000000018|AB31234000000016|AH" + DUE18 + "|"
        "AJA title|AOTESTLIB|CK001|\r"
    ).encode("ascii")
    assert expected == encode(message, field_order=FieldOrder.ALPHABETICAL)


def test_repeated_fields_keep_their_own_order_when_sorted() -> None:
    """Three screen messages stay in the order given, among the sorted fields."""
    message = end_session(screen=("3", "1", "2"))
    frame = encode(message, field_order=FieldOrder.ALPHABETICAL)
    assert HEAD36 + b"AAP|AF3|AF1|AF2|AOLIB|\r" == frame


# --- character sets and transliteration -------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Zoë", b"Zoe"),
        ("Brontë", b"Bronte"),
        ("æ", b"ae"),
        ("ß", b"ss"),
        ("ł", b"l"),
        ("Ærøskøbing", b"AEroskobing"),
        ("Zoe\u0308", b"Zoe"),
        ("漢字", b"??"),
        ("naïve café – “quoted”", b'naive cafe - "quoted"'),
    ],
)
def test_ascii_transliterates_what_it_cannot_hold(text: str, expected: bytes) -> None:
    """In ASCII accents go, a few letters are spelt out and the rest become `?`."""
    frame = encode(end_session(screen=(text,)), encoding="ascii")
    assert HEAD36 + b"AOLIB|AAP|AF" + expected + b"|\r" == frame


def test_cp850_keeps_its_own_letters_and_transliterates_the_rest() -> None:
    """cp850 has ë (0x89) but neither ł nor ę: `Zoë Wałęsa` -> `Zo\\x89 Walesa`."""
    frame = encode(end_session(screen=("Zoë Wałęsa",)), encoding="cp850")
    assert HEAD36 + b"AOLIB|AAP|AFZo\x89 Walesa|\r" == frame


def test_latin1_spells_out_what_it_lacks() -> None:
    """ISO-8859-1 has no Œ, en dash or euro sign: `OEuvre - 5 EUR`."""
    frame = encode(end_session(screen=("Œuvre – 5 €",)), encoding="iso-8859-1")
    assert HEAD36 + b"AOLIB|AAP|AFOEuvre - 5 EUR|\r" == frame


def test_decomposed_accents_are_composed_for_a_single_byte_set() -> None:
    """`e` + combining diaeresis becomes Latin-1's ë (0xEB), not a bare `e`."""
    frame = encode(end_session(screen=("Zoe\u0308",)), encoding="latin-1")
    assert HEAD36 + b"AOLIB|AAP|AFZo\xeb|\r" == frame


def test_utf8_keeps_decomposed_accents_as_sent() -> None:
    """UTF-8 can hold anything, so a decomposed accent is not normalised."""
    frame = encode(end_session(screen=("Zoe\u0308",)))
    assert HEAD36 + b"AOLIB|AAP|AFZoe\xcc\x88|\r" == frame


def test_lone_surrogate_becomes_a_question_mark_in_utf8() -> None:
    """A lone surrogate cannot be UTF-8; it is written as `?`, not an exception."""
    frame = encode(end_session(screen=("a\ud800b",)))
    assert HEAD36 + b"AOLIB|AAP|AFa?b|\r" == frame


def test_transliteration_cannot_bring_in_a_delimiter() -> None:
    """A fullwidth vertical line (U+FF5C) decomposes to `|`; the policy then applies."""
    frame = encode(end_session(screen=("a\uff5cb",)), encoding="ascii")
    assert HEAD36 + b"AOLIB|AAP|AFa b|\r" == frame


def test_spelt_out_letters_still_fit_in_255() -> None:
    """200 ß become 400 s in ASCII, cut to 255 like any long value."""
    frame = encode(end_session(patron="ß" * 200), encoding="ascii")
    assert HEAD36 + b"AOLIB|AA" + b"s" * 255 + b"|\r" == frame


def test_fixed_field_the_charset_cannot_hold_keeps_its_width() -> None:
    """A currency of `€€€` in a 37's fixed part is `???` in ASCII, three wide."""
    message, _ = GOLDEN["37 fee paid"]
    assert isinstance(message, FeePaidRequest)
    frame = encode(dataclasses.replace(message, currency_type="€€€"), encoding="ascii")
    assert b"???" == frame[24:27]


def test_checksum_covers_the_transliterated_bytes() -> None:
    """AZ is computed over the ASCII bytes sent, `Zoe Bronte`, and verifies."""
    frame = encode(
        end_session(screen=("Zoë Brontë",)),
        encoding="ascii",
        sequence=3,
        error_detection=True,
    )
    covered = HEAD36 + b"AOLIB|AAP|AFZoe Bronte|AY3AZ"
    assert covered + az(covered) + b"\r" == frame
    assert 3 == decode(frame[:-1], encoding="ascii").sequence


def test_checksum_covers_the_cp850_bytes() -> None:
    """AZ over cp850 bytes (ë = 0x89) differs from one over UTF-8 and verifies."""
    frame = encode(
        end_session(screen=("Zoë",)), encoding="cp850", sequence=0, error_detection=True
    )
    covered = HEAD36 + b"AOLIB|AAP|AFZo\x89|AY0AZ"
    assert covered + az(covered) + b"\r" == frame


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32", "cp500", "rot13", "klingon"])
def test_encodings_that_cannot_carry_sip2_are_refused(encoding: str) -> None:
    """An unknown codec, or one not writing ASCII as single bytes, is our bug."""
    assert encoding_problem(encoding) is not None
    with pytest.raises(LocalProtocolError):
        encode(end_session(), encoding=encoding)


@pytest.mark.parametrize(
    "encoding", ["utf-8", "cp850", "iso-8859-1", "ascii", "cp1252"]
)
def test_ascii_compatible_encodings_are_accepted(encoding: str) -> None:
    """The encodings SIP2 terminals use have no problem."""
    assert encoding_problem(encoding) is None


# --- due dates -----------------------------------------------------------------------

DUE = dt.datetime(2026, 12, 18, 23, 59, 0)


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        (DueDateStyle.SIP, "20261218    235900"),
        (DueDateStyle.ISO, "2026-12-18 23:59:00"),
        (DueDateStyle.DATE, "20261218"),
    ],
)
def test_due_date_styles(style: DueDateStyle, expected: str) -> None:
    """18 December 2026 23:59 in each style: SIP's 18 characters, ISO, day only."""
    assert expected == write_due_date(DUE, style)


def test_sip_due_date_of_an_aware_moment_is_in_utc() -> None:
    """23:59 at UTC+1 is `22:59` with zone `   Z` in the SIP style."""
    moment = DUE.replace(tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert "20261218   Z225900" == write_due_date(moment, DueDateStyle.SIP)


def test_due_date_in_iso_style_travels_in_ah() -> None:
    """A 12 carries the ISO due date in AH unchanged."""
    message, _ = GOLDEN["12 checkout response"]
    assert isinstance(message, CheckoutResponse)
    iso = write_due_date(DUE, DueDateStyle.ISO)
    frame = encode(dataclasses.replace(message, due_date=iso))
    assert b"|AH2026-12-18 23:59:00|" in frame


# --- round trips under every option -----------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    message=MESSAGES,
    order=st.sampled_from(list(FieldOrder)),
    policy=st.sampled_from(list(DelimiterPolicy)),
)
def test_any_message_survives_any_field_order_and_policy(
    message: Message, order: FieldOrder, policy: DelimiterPolicy
) -> None:
    """Values without `|` read back unchanged whatever order and policy wrote them."""
    frame = encode(
        message,
        field_order=order,
        delimiter_policy=policy,
        sequence=1,
        error_detection=True,
    )
    assert message == decode(frame[:-1]).message


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=300),
    encoding=st.sampled_from(["ascii", "cp850", "iso-8859-1", "utf-8"]),
    policy=st.sampled_from(list(DelimiterPolicy)),
)
def test_any_text_gives_one_safe_field_that_verifies(
    text: str, encoding: str, policy: DelimiterPolicy
) -> None:
    """Any patron text yields exactly one AA field of at most 255 characters."""
    frame = encode(
        end_session(patron=text),
        encoding=encoding,
        delimiter_policy=policy,
        sequence=5,
        error_detection=True,
    )
    assert frame.endswith(b"\r")
    assert 1 == frame.count(b"\r")
    assert b"\n" not in frame
    decoded = decode(frame[:-1], encoding=encoding)
    assert decoded.encoding == encoding
    assert isinstance(decoded.message, EndSessionResponse)
    assert len(decoded.message.patron_identifier) <= 255
    assert () == decoded.message.extra_fields


def test_control_character_in_a_fixed_text_field_is_written_as_question_mark() -> None:
    """A 93 read with `\\x10` as PWD algorithm re-encodes with `?` in its place."""
    message = decode(b"930\x10CNuser|COpass|").message
    assert b"930?CNuser|COpass|\r" == encode(message)
