"""Block patron (01), patron enable (25) and item status update (19) on the wire.

Frames are written out byte by byte from the SIP2 2.00 layouts; each test runs
on a real server on loopback, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import pytest_twisted
import sqlalchemy as sa
from twisted.internet import threads

from ils.models import Item, PatronBlock
from tests.sip2server.conftest import ADA, BLOCKED, ITEMS, PIN, SipTarget
from tests.sip2server.test_wire_behaviour import RawTerminal, checkout_body, sip_now


def block_frame(patron: str, message: bytes, *, retained: bool) -> bytes:
    """01: card retained Y/N, date, then AO, AL (the message), AA, AC."""
    return (
        b"01"
        + (b"Y" if retained else b"N")
        + sip_now()
        + b"AOCITY|AL"
        + message
        + b"|AA"
        + patron.encode("ascii")
        + b"|AC|\r"
    )


def enable_frame(patron: str, pin: str = "") -> bytes:
    """25: date, then AO, AA, AC and AD (the patron's PIN, may be empty)."""
    return (
        b"25"
        + sip_now()
        + b"AOCITY|AA"
        + patron.encode("ascii")
        + b"|AC|AD"
        + pin.encode("ascii")
        + b"|\r"
    )


def fields(reply: bytes, fixed_length: int) -> dict[bytes, bytes]:
    """The variable fields of a reply after its `fixed_length` fixed bytes."""
    found: dict[bytes, bytes] = {}
    for part in reply[fixed_length:].split(b"|"):
        if len(part) >= 2:
            found.setdefault(part[:2], part[2:])
    return found


@pytest_twisted.inlineCallbacks
def test_block_then_enable_a_card(sip_target: SipTarget):  # type: ignore[no-untyped-def]
    """A kiosk blocks a card (24 shows charge denied, checkout refused), and a
    patron enable lifts that block so the card borrows again."""

    def session() -> tuple[bytes, bytes, bytes, bytes]:
        terminal = RawTerminal(sip_target)
        try:
            terminal.login()
            blocked = terminal.exchange(
                block_frame(ADA, b"card left in the slot", retained=True)
            )
            refused = terminal.exchange(checkout_body(ADA, ITEMS[0]) + b"\r")
            enabled = terminal.exchange(enable_frame(ADA, PIN))
            lent = terminal.exchange(checkout_body(ADA, ITEMS[0]) + b"\r")
            return blocked, refused, enabled, lent
        finally:
            terminal.close()

    blocked, refused, enabled, lent = yield threads.deferToThread(session)

    # 24: patron status (14) starts with charge privileges denied.
    assert blocked.startswith(b"24Y")
    assert b"Y" == fields(blocked, 2 + 14 + 3 + 18)[b"BL"]
    # 12: ok 0 — refused while blocked.
    assert refused.startswith(b"120")
    # 26: the block is gone: charge privileges no longer denied; PIN was right.
    assert enabled.startswith(b"26 ")
    assert b"Y" == fields(enabled, 2 + 14 + 3 + 18)[b"CQ"]
    assert lent.startswith(b"121")
    with sip_target.library.database.read() as session_:
        notes = session_.scalars(sa.select(PatronBlock.note)).all()
    assert "card left in the slot (card retained by the terminal)" in notes


@pytest_twisted.inlineCallbacks
def test_enable_leaves_a_staff_block(sip_target: SipTarget):  # type: ignore[no-untyped-def]
    """A card staff blocked stays blocked after a patron enable, and the screen
    message says only staff can lift it."""

    def session() -> bytes:
        terminal = RawTerminal(sip_target)
        try:
            terminal.login()
            return terminal.exchange(enable_frame(BLOCKED, PIN))
        finally:
            terminal.close()

    enabled = yield threads.deferToThread(session)

    assert enabled.startswith(b"26Y")
    assert b"Only staff can lift the remaining block." in enabled


@pytest_twisted.inlineCallbacks
def test_enable_with_a_wrong_pin_lifts_nothing(sip_target: SipTarget):  # type: ignore[no-untyped-def]
    """A wrong PIN on 25 leaves the terminal's block in place (CQ N)."""

    def session() -> tuple[bytes, bytes]:
        terminal = RawTerminal(sip_target)
        try:
            terminal.login()
            terminal.exchange(block_frame(ADA, b"lost", retained=False))
            enabled = terminal.exchange(enable_frame(ADA, "9999"))
            refused = terminal.exchange(checkout_body(ADA, ITEMS[1]) + b"\r")
            return enabled, refused
        finally:
            terminal.close()

    enabled, refused = yield threads.deferToThread(session)

    assert b"N" == fields(enabled, 2 + 14 + 3 + 18)[b"CQ"]
    assert refused.startswith(b"120")


@pytest_twisted.inlineCallbacks
def test_item_status_update_stores_the_properties(sip_target: SipTarget):  # type: ignore[no-untyped-def]
    """19 stores CH on the item and answers 20 with ok 1; an unknown item gets 0."""

    def session() -> tuple[bytes, bytes]:
        terminal = RawTerminal(sip_target)
        try:
            terminal.login()
            stored = terminal.exchange(
                b"19" + sip_now() + b"AOCITY|AB" + ITEMS[2].encode() + b"|AC|CHbin 7|\r"
            )
            unknown = terminal.exchange(
                b"19" + sip_now() + b"AOCITY|ABNO-SUCH-ITEM|AC|CHbin 7|\r"
            )
            return stored, unknown
        finally:
            terminal.close()

    stored, unknown = yield threads.deferToThread(session)

    assert stored.startswith(b"201")
    assert b"bin 7" == fields(stored, 2 + 1 + 18)[b"CH"]
    assert unknown.startswith(b"200")
    with sip_target.library.database.read() as session_:
        properties = session_.scalar(
            sa.select(Item.properties).where(Item.barcode == ITEMS[2])
        )
    assert "bin 7" == properties
