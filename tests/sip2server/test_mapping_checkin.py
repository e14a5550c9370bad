"""Checkin (09/10) routing and item information (17/18) on the wire, with the
default terminal policy: holds here and elsewhere, items going home, items not
on loan, and the states a gate sees.

Frames are written out byte by byte from the SIP2 2.00 layouts (and the 3M
extensions CT, CV, CY, DA); each test runs on a real server on loopback, on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import threads

from tests.sip2server.conftest import ADA, BEN, ITEMS, PIN, SipTarget
from tests.sip2server.test_wire_behaviour import RawTerminal, checkout_body, sip_now

# Fixed parts before the first variable field, by reply: command (2) + fields.
FIXED_10 = 2 + 1 + 1 + 1 + 1 + 18  # ok, resensitize, magnetic media, alert, date
FIXED_16 = 2 + 1 + 1 + 18  # ok, available, date
FIXED_18 = 2 + 2 + 2 + 2 + 18  # circulation status, security marker, fee type
FIXED_24 = 2 + 14 + 3 + 18  # patron status, language, date
FIXED_30 = FIXED_12 = 2 + 1 + 1 + 1 + 1 + 18
FIXED_38 = 2 + 1 + 18  # payment accepted, date
FIXED_64 = 2 + 14 + 3 + 18 + 6 * 4  # ... and six 4-digit counts
FIXED_66 = 2 + 1 + 4 + 4 + 18  # ok, renewed count, unrenewed count, date

# An item whose home is the other branch of the test library.
WEST_ITEM = "39999000000019"


def all_fields(reply: bytes, fixed_length: int) -> dict[bytes, list[bytes]]:
    """Every variable field of a reply after its fixed part, repeats in order."""
    found: dict[bytes, list[bytes]] = {}
    for part in reply[fixed_length:].split(b"|"):
        if len(part) >= 2:
            found.setdefault(part[:2], []).append(part[2:])
    return found


def one(reply: bytes, fixed_length: int, code: bytes) -> bytes | None:
    """The first value of field `code`, or None when the reply has none."""
    values = all_fields(reply, fixed_length).get(code)
    return None if values is None else values[0]


def checkin_frame(item: str, location: bytes = b"NORTH") -> bytes:
    """09: no block N, date, return date, then AP, AO, AB, AC."""
    now = sip_now()
    return (
        b"09N"
        + now
        + now
        + b"AP"
        + location
        + b"|AOCITY|AB"
        + item.encode()
        + b"|AC|\r"
    )


def item_frame(item: str) -> bytes:
    """17: date, then AO, AB, AC."""
    return b"17" + sip_now() + b"AOCITY|AB" + item.encode() + b"|AC|\r"


def hold_frame(
    mode: bytes,
    patron: str,
    *,
    item: str | None = None,
    title: str | None = None,
    pickup: bytes | None = None,
    expires: bytes | None = None,
    pin: str = PIN,
) -> bytes:
    """15: hold mode, date, then BW, BS, AO, AA, AD, AB, AJ, AC as given."""
    frame = b"15" + mode + sip_now()
    if expires is not None:
        frame += b"BW" + expires + b"|"
    if pickup is not None:
        frame += b"BS" + pickup + b"|"
    frame += b"AOCITY|AA" + patron.encode() + b"|AD" + pin.encode() + b"|"
    if item is not None:
        frame += b"AB" + item.encode() + b"|"
    if title is not None:
        frame += b"AJ" + title.encode() + b"|"
    return frame + b"AC|\r"


def talk(target: SipTarget, frames: list[bytes]) -> list[bytes]:
    """Log in, send each frame in turn, and return the replies."""
    with RawTerminal(target) as terminal:
        terminal.login()
        return [terminal.exchange(frame) for frame in frames]


def in_thread(function: Any, *args: Any) -> Any:
    """Run blocking client code off the reactor, which the server needs."""
    return threads.deferToThread(function, *args)


@pytest_twisted.inlineCallbacks
def test_checkin_routes_holds_transits_and_returns(sip_target: SipTarget) -> Any:
    """A hold here is CV 01 with CY masked and DA; a hold for WEST is CV 02 with
    CT WEST; a WEST item is CV 04 with CT WEST; an item not on loan is ok with
    a screen message and no CV; the gate then sees 08 and 10."""
    sip_target.library.add_item(WEST_ITEM, title="Harbour Lights", branch="WEST")
    frames = [
        checkout_body(ADA, ITEMS[0]) + b"\r",
        hold_frame(b"+", BEN, item=ITEMS[0], pickup=b"NORTH"),
        hold_frame(b"+", BEN, item=ITEMS[1], pickup=b"WEST"),
        checkin_frame(ITEMS[0]),
        checkin_frame(ITEMS[1]),
        checkin_frame(WEST_ITEM),
        checkin_frame(ITEMS[2]),
        item_frame(ITEMS[0]),
        item_frame(ITEMS[1]),
        item_frame(ITEMS[2]),
    ]
    replies = yield in_thread(talk, sip_target, frames)
    lent, held_here, held_west, here, west, home, plain, shelf, transit, free = replies

    assert lent.startswith(b"121")
    # 16: ok 1, available N (the item is out or on the shelf, not yet trapped).
    assert held_here.startswith(b"161N")
    assert b"NORTH" == one(held_here, FIXED_16, b"BS")
    assert held_west.startswith(b"161N")

    # 10: ok 1, resensitize Y, magnetic media U, alert Y.
    assert here.startswith(b"101YUY")
    assert [b"01"] == all_fields(here, FIXED_10)[b"CV"]
    assert b"**********0026" == one(here, FIXED_10, b"CY")
    assert b"Lindqvist, B" == one(here, FIXED_10, b"DA")
    assert one(here, FIXED_10, b"CT") is None
    assert b"NORTH" == one(here, FIXED_10, b"AQ")

    assert west.startswith(b"101YUY")
    assert b"02" == one(west, FIXED_10, b"CV")
    assert b"WEST" == one(west, FIXED_10, b"CT")

    assert home.startswith(b"101YUY")
    assert b"04" == one(home, FIXED_10, b"CV")
    assert b"WEST" == one(home, FIXED_10, b"CT")
    assert b"WEST" == one(home, FIXED_10, b"AQ")
    assert one(home, FIXED_10, b"CY") is None

    # Not on loan: still a success by default, alert N, no CV or CL.
    assert plain.startswith(b"101YUN")
    assert [b"This item was not on loan."] == all_fields(plain, FIXED_10)[b"AF"]
    assert one(plain, FIXED_10, b"CV") is None
    assert one(plain, FIXED_10, b"CL") is None

    # 18: 08 waiting on the hold shelf, security marker 02, fee type 01, with
    # the pickup date (CM, 18 characters) and nobody left in the queue (CF0).
    assert shelf.startswith(b"180802" + b"01")
    assert b"0" == one(shelf, FIXED_18, b"CF")
    assert 18 == len(one(shelf, FIXED_18, b"CM") or b"")
    # 10 in transit, to WEST (CT).
    assert transit.startswith(b"181002")
    assert b"WEST" == one(transit, FIXED_18, b"CT")
    assert free.startswith(b"180302")
    assert one(free, FIXED_18, b"AH") is None


@pytest_twisted.inlineCallbacks
def test_item_information_reports_loans_queues_and_losses(sip_target: SipTarget) -> Any:
    """18 says 04 with the due date and the hold queue for a loan, 12 for a lost
    item, 13 for a missing one, 06 in processing, and 01 for a barcode nobody has."""
    from ils.models import ItemStatus  # noqa: PLC0415

    library = sip_target.library
    library.add_item("39999000000027", status=ItemStatus.LOST)
    library.add_item("39999000000035", status=ItemStatus.MISSING)
    library.add_item("39999000000043", status=ItemStatus.IN_PROCESSING)
    frames = [
        checkout_body(ADA, ITEMS[3]) + b"\r",
        hold_frame(b"+", BEN, item=ITEMS[3]),
        item_frame(ITEMS[3]),
        item_frame("39999000000027"),
        item_frame("39999000000035"),
        item_frame("39999000000043"),
        item_frame("NO-SUCH-ITEM"),
    ]
    replies = yield in_thread(talk, sip_target, frames)
    _lent, _held, charged, lost, missing, processing, unknown = replies

    assert charged.startswith(b"180402")
    assert b"1" == one(charged, FIXED_18, b"CF")
    assert 18 == len(one(charged, FIXED_18, b"AH") or b"")
    assert lost.startswith(b"181202")
    assert missing.startswith(b"181302")
    assert processing.startswith(b"180602")
    # Unknown: other (01), security marker other (00), and a reason.
    assert unknown.startswith(b"180100")
    assert [b"This item is not recognised."] == all_fields(unknown, FIXED_18)[b"AF"]
