"""Per-account output settings, end to end: a real server started with each
option, hand-written frames sent over a socket, replies read as raw bytes.

The settings are `encoding`, `delimiter_in_value`, `field_order`,
`due_date_format` and `error_detection` of `[[accounts]]`; the first tests check
that the configuration validates them with messages naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from sip2server.app import start_server
from sip2server.config import ConfigError, parse_config
from sip2server.protocol import DelimiterPolicy, DueDateStyle, FieldOrder
from tests.conftest import REPO_ROOT
from tests.sip2server.conftest import (
    ITEMS,
    LOGIN,
    PASSWORD,
    PIN,
    SipTarget,
    server_config,
    stock_library,
)
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    az,
    checkout_body,
    in_thread,
    sip_now,
    with_trailer,
)

ZOE = "21234000000059"
# Items whose titles need the settings: a `|`, a newline, letters outside ASCII.
PIPE_ITEM = "31234000009991"
NEWLINE_ITEM = "31234000009992"
AESOP_ITEM = "31234000009993"

# --- configuration -------------------------------------------------------------------


def account_problems(**options: Any) -> str:
    """The ConfigError text for one account with `options`, or "" when valid."""
    try:
        parse_config(
            {
                "database": {"url": "sqlite://"},
                "accounts": [
                    {
                        "login": LOGIN,
                        "password": PASSWORD,
                        "institution": "CITY",
                        "location": "NORTH",
                        **options,
                    }
                ],
            },
            "sip2server.toml",
        )
    except ConfigError as error:
        return str(error)
    return ""


def test_output_settings_default_to_the_spec() -> None:
    """Without the keys: UTF-8, `|` as space, spec order, 18-character due dates."""
    account = server_config("sqlite://").accounts[0]
    assert "utf-8" == account.encoding
    assert DelimiterPolicy.SPACE == account.delimiter_in_value
    assert FieldOrder.SPEC == account.field_order
    assert DueDateStyle.SIP == account.due_date_format


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("encoding", "klingon", "'klingon' is not a known character set"),
        ("encoding", "utf-16", "does not write ASCII as single bytes"),
        ("delimiter_in_value", "escape", "'space', 'remove' or 'entity'"),
        ("field_order", "random", "'spec' or 'alphabetical'"),
        ("due_date_format", "us", "'sip', 'iso' or 'date'"),
        ("error_detection", "always", "'off', 'auto' or 'required'"),
    ],
)
def test_bad_output_setting_is_reported_with_file_and_key(
    key: str, value: str, problem: str
) -> None:
    """Each bad value names the file, `accounts[0].<key>` and what is allowed."""
    message = account_problems(**{key: value})
    assert f"sip2server.toml: accounts[0].{key}: " in message
    assert problem in message


def test_every_output_setting_is_accepted_by_its_word() -> None:
    """The words the example file documents are all valid."""
    assert "" == account_problems(
        encoding="ascii",
        delimiter_in_value="entity",
        field_order="alphabetical",
        due_date_format="iso",
        error_detection="required",
    )


def test_example_configuration_documents_every_output_setting() -> None:
    """config/sip2server.toml sets each output key, with its choices in a comment."""
    text = (REPO_ROOT / "config" / "sip2server.toml").read_text(encoding="utf-8")
    for line in [
        'encoding = "utf-8"',
        'delimiter_in_value = "space"',
        'field_order = "spec"',
        'due_date_format = "sip"',
        'error_detection = "auto"',
    ]:
        assert line in text
    for word in ['"entity"', '"alphabetical"', '"iso"', '"date"', '"required"']:
        assert word in text


# --- a server per option set ---------------------------------------------------------


@defer.inlineCallbacks
def with_server(
    database_url: str, talk: Callable[[SipTarget], Any], **options: Any
) -> Any:
    """Start a server whose kiosk account has `options`, run `talk` in a thread."""
    from twisted.internet import reactor  # noqa: PLC0415 (pytest-twisted's reactor)

    library = stock_library(database_url)
    library.add_patron(ZOE, surname="Brontë", firstname="Zoë", pin=PIN)
    library.add_item(PIPE_ITEM, title="Tides | Currents")
    library.add_item(NEWLINE_ITEM, title="Tides\r\nCurrents")
    library.add_item(AESOP_ITEM, title="Æsop’s Fables – Straße")
    server = yield start_server(server_config(database_url, **options), reactor)
    host, port = server.addresses()[0]
    try:
        target = SipTarget(host=host, port=port, library=library, server=server)
        result = yield in_thread(talk, target)
    finally:
        yield server.stop()
        library.database.dispose()
    return result


def patron_status(patron: str) -> bytes:
    """A 23 without terminator: language 001, date, AO AA AC AD."""
    return (
        b"23001"
        + sip_now()
        + b"AOCITY|AA"
        + patron.encode("ascii")
        + b"|AC|AD"
        + PIN.encode("ascii")
        + b"|"
    )


def item_information(item: str) -> bytes:
    """A 17 without terminator: date, AO AB."""
    return b"17" + sip_now() + b"AOCITY|AB" + item.encode("ascii") + b"|"


# Fixed-part widths of the replies read here, from SIP2 2.00's tables.
FIXED_WIDTH = {
    # ok 1, renewal ok 1, magnetic media 1, desensitize 1, date 18.
    b"12": 22,
    # circulation status 2, security marker 2, fee type 2, date 18.
    b"18": 24,
    # patron status 14, language 3, date 18.
    b"24": 35,
}


def fields(payload: bytes) -> list[tuple[bytes, bytes]]:
    """The variable fields of a reply as (code, value), in wire order, up to AY."""
    variable = payload[2 + FIXED_WIDTH[payload[:2]] :]
    segments = variable.split(b"|")
    return [(segment[:2], segment[2:]) for segment in segments[:-1]]


def field(payload: bytes, code: bytes) -> bytes:
    """The value of the first `code` field of a reply."""
    values = [value for found, value in fields(payload) if found == code]
    assert values, (code, payload)
    return values[0]


def checksum_verifies(payload: bytes) -> bool:
    """Whether a reply's AZ is the checksum of the bytes before it, as sent."""
    covered, sent = payload[:-4], payload[-4:]
    return covered.endswith(b"AZ") and az(covered) == sent


# --- encoding ------------------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_ascii_account_gets_transliterated_names_and_titles(database_url: str) -> Any:
    """Zoë Brontë reads `Zoe Bronte`; Æ, a curly quote, a dash and ß are spelt out."""

    def talk(target: SipTarget) -> tuple[bytes, bytes]:
        with RawTerminal(target) as terminal:
            terminal.login()
            status = terminal.exchange(with_trailer(patron_status(ZOE), 2) + b"\r")
            item = terminal.exchange(item_information(AESOP_ITEM) + b"\r")
            return status, item

    status, item = yield with_server(database_url, talk, encoding="ascii")

    assert b"Zoe Bronte" == field(status, b"AE")
    assert b"AEsop's Fables - Strasse" == field(item, b"AJ")
    assert status.isascii()
    assert item.isascii()
    assert b"AY2AZ" == status[-9:-4]
    assert checksum_verifies(status)


@pytest_twisted.inlineCallbacks
def test_cp850_account_gets_cp850_bytes_and_a_checksum_over_them(
    database_url: str,
) -> Any:
    """In cp850 ë is 0x89, and AZ is computed over those bytes, not UTF-8 ones."""

    def talk(target: SipTarget) -> tuple[bytes, bytes]:
        with RawTerminal(target) as terminal:
            terminal.login()
            status = terminal.exchange(with_trailer(patron_status(ZOE), 4) + b"\r")
            item = terminal.exchange(item_information(AESOP_ITEM) + b"\r")
            return status, item

    status, item = yield with_server(database_url, talk, encoding="cp850")

    assert b"Zo\x89 Bront\x89" == field(status, b"AE")
    assert checksum_verifies(status)
    # cp850 has Æ (0x92) and ß (0xE1) but neither the curly quote nor the dash.
    assert b"\x92sop's Fables - Stra\xe1e" == field(item, b"AJ")


@pytest_twisted.inlineCallbacks
def test_utf8_account_gets_utf8_names(database_url: str) -> Any:
    """By default Zoë Brontë goes out in UTF-8 (ë = C3 AB), checksummed over it."""

    def talk(target: SipTarget) -> bytes:
        with RawTerminal(target) as terminal:
            terminal.login()
            return terminal.exchange(with_trailer(patron_status(ZOE), 5) + b"\r")

    status = yield with_server(database_url, talk)

    assert b"Zo\xc3\xab Bront\xc3\xab" == field(status, b"AE")
    assert checksum_verifies(status)


# --- a `|` or a control character inside a value -------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("space", b"Tides   Currents"),
        ("remove", b"Tides  Currents"),
        ("entity", b"Tides &#124; Currents"),
    ],
)
@pytest_twisted.inlineCallbacks
def test_delimiter_in_a_title_follows_the_account_policy(
    database_url: str, policy: str, expected: bytes
) -> Any:
    """`Tides | Currents` in AJ: a space, removed, or `&#124;`, never a split field."""

    def talk(target: SipTarget) -> tuple[bytes, bytes]:
        with RawTerminal(target) as terminal:
            terminal.login()
            item = terminal.exchange(item_information(PIPE_ITEM) + b"\r")
            newline = terminal.exchange(item_information(NEWLINE_ITEM) + b"\r")
            return item, newline

    item, newline = yield with_server(database_url, talk, delimiter_in_value=policy)

    assert expected == field(item, b"AJ")
    # CR and LF are always spaces, whatever the policy; the reply stays one frame.
    assert b"Tides  Currents" == field(newline, b"AJ")
    assert NEWLINE_ITEM.encode("ascii") == field(newline, b"AB")


# --- field order ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # 18's table: CF AB AJ BG CK AQ AP CS for an available item (CF, the
        # hold queue length, is sent even when it is 0).
        ("spec", [b"CF", b"AB", b"AJ", b"BG", b"CK", b"AQ", b"AP", b"CS"]),
        ("alphabetical", [b"AB", b"AJ", b"AP", b"AQ", b"BG", b"CF", b"CK", b"CS"]),
    ],
)
@pytest_twisted.inlineCallbacks
def test_field_order_of_item_information(
    database_url: str, order: str, expected: list[bytes]
) -> Any:
    """An 18 lists its fields in the spec's order or sorted by code, as configured."""

    def talk(target: SipTarget) -> bytes:
        with RawTerminal(target) as terminal:
            terminal.login()
            return terminal.exchange(item_information(ITEMS[0]) + b"\r")

    item = yield with_server(database_url, talk, field_order=order)

    assert expected == [code for code, _ in fields(item)]


# --- due dates -----------------------------------------------------------------------

DUE_DATE_SHAPES = {
    "sip": re.compile(rb"\d{8}    \d{6}"),
    "iso": re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"),
    "date": re.compile(rb"\d{8}"),
}


@pytest.mark.parametrize("style", ["sip", "iso", "date"])
@pytest_twisted.inlineCallbacks
def test_due_date_style_applies_to_checkout_and_item_information(
    database_url: str, style: str
) -> Any:
    """AH of the 12 and of the next 18 for the same item have the configured shape."""

    def talk(target: SipTarget) -> tuple[bytes, bytes]:
        with RawTerminal(target) as terminal:
            terminal.login()
            checkout = terminal.exchange(checkout_body(ZOE, ITEMS[1]) + b"\r")
            item = terminal.exchange(item_information(ITEMS[1]) + b"\r")
            return checkout, item

    checkout, item = yield with_server(database_url, talk, due_date_format=style)

    assert b"121" == checkout[:3], checkout
    due = field(checkout, b"AH")
    assert DUE_DATE_SHAPES[style].fullmatch(due), due
    assert due == field(item, b"AH")


# --- error detection -----------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_required_error_detection_answers_a_request_without_checksum_with_96(
    database_url: str,
) -> Any:
    """After login, a 99 without AY/AZ gets `96AZFEF6`; with them it gets its 98."""

    def talk(target: SipTarget) -> list[bytes]:
        with RawTerminal(target) as terminal:
            login = terminal.exchange(with_trailer(LOGIN_FRAME[:-1], 0) + b"\r")
            bare = terminal.exchange(STATUS_FRAME)
            bare_item = terminal.exchange(item_information(ITEMS[0]) + b"\r")
            checked = terminal.exchange(with_trailer(STATUS_FRAME[:-1], 1) + b"\r")
            return [login, bare, bare_item, checked]

    login, bare, bare_item, checked = yield with_server(
        database_url, talk, error_detection="required"
    )

    assert login.startswith(b"941AY0AZ")
    assert checksum_verifies(login)
    assert b"96AZFEF6" == bare
    assert b"96AZFEF6" == bare_item
    assert checked.startswith(b"98")
    assert b"AY1AZ" == checked[-9:-4]
    assert checksum_verifies(checked)


@pytest_twisted.inlineCallbacks
def test_error_detection_off_sends_no_checksum_even_when_asked(
    database_url: str,
) -> Any:
    """With `off`, a checksummed 99 gets a bare 98, and a bad checksum a bare 96."""

    def talk(target: SipTarget) -> tuple[bytes, bytes]:
        with RawTerminal(target) as terminal:
            terminal.login()
            good = with_trailer(STATUS_FRAME[:-1], 3)
            status = terminal.exchange(good + b"\r")
            bad = good[:-1] + (b"0" if good[-1:] != b"0" else b"1")
            return status, terminal.exchange(bad + b"\r")

    status, resend = yield with_server(database_url, talk, error_detection="off")

    assert status.startswith(b"98")
    assert b"AY" not in status
    assert b"AZ" not in status
    assert b"96" == resend


@pytest_twisted.inlineCallbacks
def test_auto_error_detection_echoes_the_request(database_url: str) -> Any:
    """By default a checksummed request gets AY/AZ back and a bare one gets none."""

    def talk(target: SipTarget) -> tuple[bytes, bytes]:
        with RawTerminal(target) as terminal:
            terminal.login()
            checked = terminal.exchange(with_trailer(STATUS_FRAME[:-1], 6) + b"\r")
            return checked, terminal.exchange(STATUS_FRAME)

    checked, bare = yield with_server(database_url, talk)

    assert b"AY6AZ" == checked[-9:-4]
    assert checksum_verifies(checked)
    assert b"AZ" not in bare
