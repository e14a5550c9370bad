"""`patron_pin_required` over the wire, for every request that acts for or tells
of a patron (#5, second trial F5).

One server, two CITY accounts on the stock library: kiosk1 requires the
patron's PIN, kiosk2 does not. Without AD, kiosk1 refuses 23, 25, 63, 11, 29,
15 (+, - and *), 37 and 65 with "Please enter your PIN." (CQ N where the reply
has it) and tells nothing of the account; 35 and 17 are answered as always;
kiosk2 answers as before. Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_twisted
import sqlalchemy as sa

from ils.models import Hold, HoldStatus, Loan, Patron
from sip2server.app import start_server
from sip2server.config import parse_config
from tests.sip2server.conftest import (
    ADA,
    ITEMS,
    LOGIN,
    PASSWORD,
    SipTarget,
    stock_library,
)
from tests.sip2server.test_adv_fixes_wire import add_fee, owed, pay, renew_all
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    RawTerminal,
    in_thread,
    sip_now,
)

PLAIN_LOGIN_FRAME = b"9300CNkiosk2|COkiosk2-secret|CPNORTH|\r"
ASK_FOR_PIN = b"Please enter your PIN."
LENT, HELD, SPARE, OTHER = ITEMS[0], ITEMS[1], ITEMS[2], ITEMS[3]


@pytest_twisted.async_yield_fixture
async def kiosks(database_url: str) -> AsyncIterator[SipTarget]:
    """The stock library; kiosk1 requires the PIN, kiosk2 does not. Ada has
    LENT on loan, a 2.50 fee and a hold on HELD's title."""
    from twisted.internet import reactor  # noqa: PLC0415 - see conftest

    library = stock_library(database_url)
    account = {"institution": "CITY", "location": "NORTH"}
    config = parse_config(
        {
            "server": {"listen": ["tcp:0:interface=127.0.0.1"], "threads": 4},
            "database": {"url": database_url},
            "accounts": [
                {
                    "login": LOGIN,
                    "password": PASSWORD,
                    "patron_pin_required": True,
                    **account,
                },
                {"login": "kiosk2", "password": "kiosk2-secret", **account},
            ],
        },
        "<test>",
    )
    server = await start_server(config, reactor)
    host, port = server.addresses()[0]
    target = SipTarget(host=host, port=port, library=library, server=server)
    add_fee(target, ADA, 250)

    def prepare() -> None:
        with RawTerminal(target) as plain:
            assert b"941" == plain.exchange(PLAIN_LOGIN_FRAME)
            lent = plain.exchange(_checkout(ADA, LENT) + b"|AD1234|\r")
            assert lent.startswith(b"121"), lent
            held = plain.exchange(_hold(b"+", ADA, HELD) + b"|AD1234|\r")
            assert held.startswith(b"161"), held

    await in_thread(prepare)
    try:
        yield target
    finally:
        await server.stop()
        library.database.dispose()


def _checkout(patron: str, item: str) -> bytes:
    return (
        b"11NN"
        + sip_now()
        + b" " * 18
        + b"AOCITY|AA"
        + patron.encode()
        + b"|AB"
        + item.encode()
        + b"|AC"
    )


def _hold(mode: bytes, patron: str, item: str) -> bytes:
    return (
        b"15"
        + mode
        + sip_now()
        + b"AOCITY|AA"
        + patron.encode()
        + b"|AB"
        + item.encode()
    )


def _frames(patron: str) -> dict[str, bytes]:
    """Each request for `patron`, without AD, terminated."""
    now, who = sip_now(), patron.encode()
    return {
        "23": b"23001" + now + b"AOCITY|AA" + who + b"|AC|\r",
        "63": b"63001" + now + b"YYYYYY    AOCITY|AA" + who + b"|\r",
        "25": b"25" + now + b"AOCITY|AA" + who + b"|\r",
        "11": _checkout(patron, SPARE) + b"|\r",
        "29": b"29NN"
        + now
        + b" " * 18
        + b"AOCITY|AA"
        + who
        + b"|AB"
        + LENT.encode()
        + b"|\r",
        "15+": _hold(b"+", patron, OTHER) + b"|\r",
        "15-": _hold(b"-", patron, HELD) + b"|\r",
        "15*": _hold(b"*", patron, HELD) + b"|BSWEST|\r",
        "37": pay(patron, b"1.00", None),
        "65": renew_all(patron, None),
        "35": b"35" + now + b"AOCITY|AA" + who + b"|\r",
        "17": b"17" + now + b"AOCITY|AB" + LENT.encode() + b"|\r",
    }


def _ask(target: SipTarget, login: bytes, frames: dict[str, bytes]) -> dict[str, bytes]:
    with RawTerminal(target) as kiosk:
        assert b"941" == kiosk.exchange(login)
        return {name: kiosk.exchange(frame) for name, frame in frames.items()}


def _state(target: SipTarget) -> tuple[int, int, list[tuple[str, HoldStatus]]]:
    """Ada's loans, her renewals so far, and every hold (patron, status)."""
    with target.library.database.read() as session:
        loans = session.scalars(
            sa.select(Loan)
            .join(Patron, Loan.patron_id == Patron.id)
            .where(Patron.barcode == ADA, Loan.returned_at.is_(None))
        ).all()
        holds = session.execute(
            sa.select(Patron.barcode, Hold.status)
            .join(Patron, Hold.patron_id == Patron.id)
            .order_by(Hold.id)
        ).all()
        return (
            len(loans),
            sum(loan.renewals for loan in loans),
            [(row[0], row[1]) for row in holds],
        )


@pytest_twisted.ensureDeferred
async def test_every_patron_request_without_ad_asks_for_the_pin(
    kiosks: SipTarget,
) -> None:
    """Under patron_pin_required each of 23, 63, 25, 11, 29, 15 (+ - *), 37 and
    65 without AD is refused with "Please enter your PIN.", tells nothing of
    Ada's account, and changes nothing."""
    before = _state(kiosks)

    replies = await in_thread(_ask, kiosks, LOGIN_FRAME, _frames(ADA))

    for name in ("23", "63", "25", "11", "29", "15+", "15-", "15*", "37", "65"):
        reply = replies[name]
        assert ASK_FOR_PIN in reply, (name, reply)
        assert b"Okafor" not in reply, (name, reply)
        assert b"2.50" not in reply, (name, reply)
        assert b"Tide Tables" not in reply, (name, reply)
    for name in ("23", "63", "25", "11", "29"):
        assert b"|CQN" in replies[name], (name, replies[name])
    for name in ("23", "63", "25"):
        assert b"|BLY" in replies[name], (name, replies[name])
    assert replies["11"].startswith(b"120"), replies["11"]
    assert replies["29"].startswith(b"300"), replies["29"]
    for name in ("15+", "15-", "15*"):
        assert replies[name].startswith(b"160"), (name, replies[name])
    assert replies["37"].startswith(b"38N"), replies["37"]
    assert replies["65"].startswith(b"660"), replies["65"]
    # 64 counts nothing and lists nothing: the six counts are all 0000.
    assert replies["63"][2 + 14 + 3 + 18 :][:24] == b"0000" * 6, replies["63"]
    # Nothing was lent, renewed, reserved, cancelled, moved or paid.
    assert _state(kiosks) == before
    assert 250 == owed(kiosks, ADA)
    # 35 and 17 concern no account: answered as always.
    assert replies["35"].startswith(b"36Y"), replies["35"]
    assert b"Tide Tables" in replies["17"], replies["17"]


@pytest_twisted.ensureDeferred
async def test_an_unknown_card_without_ad_is_still_unknown(kiosks: SipTarget) -> None:
    """Under patron_pin_required a card nobody has is answered as unknown by 23
    and 63 (BL N), as 11 answers it: the PIN is asked for only of a real card."""
    frames = _frames("29999999999999")

    replies = await in_thread(
        _ask, kiosks, LOGIN_FRAME, {name: frames[name] for name in ("23", "63", "11")}
    )

    for name in ("23", "63", "11"):
        assert b"This library card is not recognised." in replies[name], replies[name]
    assert b"|BLN" in replies["23"], replies["23"]
    assert b"|BLN" in replies["63"], replies["63"]


@pytest_twisted.ensureDeferred
async def test_with_the_pin_the_same_requests_go_on(kiosks: SipTarget) -> None:
    """On kiosk1 the right AD opens Ada's 64 and places her hold by AB."""
    info = b"63001" + sip_now() + b"YYYYYY    AOCITY|AA" + ADA.encode() + b"|AD1234|\r"
    place = _hold(b"+", ADA, OTHER) + b"|AD1234|\r"

    replies = await in_thread(_ask, kiosks, LOGIN_FRAME, {"63": info, "15+": place})

    assert b"Okafor" in replies["63"], replies["63"]
    assert b"|CQY" in replies["63"], replies["63"]
    assert replies["15+"].startswith(b"161"), replies["15+"]


@pytest_twisted.ensureDeferred
async def test_without_pin_required_the_requests_go_on_as_before(
    kiosks: SipTarget,
) -> None:
    """kiosk2 (no patron_pin_required) answers 23, 63 and 25 in full and
    changes Ada's hold's pickup without AD, as before."""
    frames = _frames(ADA)

    replies = await in_thread(
        _ask,
        kiosks,
        PLAIN_LOGIN_FRAME,
        {name: frames[name] for name in ("23", "63", "25", "29", "15*", "15-")},
    )

    for name in ("23", "63", "25"):
        assert b"Okafor" in replies[name], (name, replies[name])
        assert ASK_FOR_PIN not in replies[name], (name, replies[name])
    assert b"2.50" in replies["63"], replies["63"]
    assert ASK_FOR_PIN not in replies["29"], replies["29"]
    assert replies["15*"].startswith(b"161"), replies["15*"]
    assert b"BSWEST" in replies["15*"], replies["15*"]
    assert replies["15-"].startswith(b"161"), replies["15-"]
    assert _state(kiosks)[2] == [(ADA, HoldStatus.CANCELLED)]


@pytest_twisted.ensureDeferred
async def test_a_wrong_pin_refuses_every_hold_mode(kiosks: SipTarget) -> None:
    """A wrong AD refuses 15 -, as it refuses 15 +, on either account: the hold
    is not cancelled by whoever knows only the card number."""
    cancel = _hold(b"-", ADA, HELD) + b"|AD9999|\r"

    replies = await in_thread(_ask, kiosks, PLAIN_LOGIN_FRAME, {"15-": cancel})

    assert replies["15-"].startswith(b"160"), replies["15-"]
    assert b"The PIN does not match this library card." in replies["15-"]
    assert _state(kiosks)[2] == [(ADA, HoldStatus.PENDING)]
