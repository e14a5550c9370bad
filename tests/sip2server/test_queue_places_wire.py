"""Patron information (63/64) on the wire: the extension HQ (the patron's place
in each unavailable hold's queue) and the limits BZ, CA, CB and CC, on SQLite
and PostgreSQL.

The test library's rule for ADULT patrons allows 3 loans (CB 0003); the
institution (GBP) has no hold, overdue or fee limit until a test sets one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
import sqlalchemy as sa

from ils.circulation import Circulation
from ils.models import Institution
from tests.sip2server.conftest import (
    ADA,
    BEN,
    ITEMS,
    LOGIN,
    PASSWORD,
    PIN,
    SipTarget,
    accounts_config,
    serving,
    stock_library,
)
from tests.sip2server.test_holds_wire import info_frame
from tests.sip2server.test_mapping_checkin import (
    FIXED_64,
    all_fields,
    checkin_frame,
    hold_frame,
    in_thread,
    one,
)
from tests.sip2server.test_wire_behaviour import RawTerminal

CARL = "21234000000059"
# An account whose policy hides HQ, and one whose allow list leaves it out.
HIDING = "hiding"
ALLOWING = "allowing"


@pytest_twisted.async_yield_fixture
async def queue_target(database_url: str) -> AsyncIterator[SipTarget]:
    """The stock library with a third patron, served to three accounts."""
    library = stock_library(database_url)
    library.add_patron(CARL, surname="Brennan", firstname="Carl", pin=PIN)
    accounts: list[dict[str, Any]] = [
        {"login": LOGIN, "password": PASSWORD},
        {"login": HIDING, "password": PASSWORD, "policy": {"hide_fields": ["HQ"]}},
        {
            "login": ALLOWING,
            "password": PASSWORD,
            "policy": {"allow_fields": ["CD", "BL", "CQ"]},
        },
    ]
    config = accounts_config(database_url, accounts)
    async with serving(library, config) as running:
        yield running


def as_account(target: SipTarget, login: str, frames: list[bytes]) -> list[bytes]:
    """Log in as `login`, send each frame in turn, and return the replies."""
    with RawTerminal(target) as terminal:
        answer = terminal.exchange(
            b"9300CN%s|CO%s|CPNORTH|\r" % (login.encode(), PASSWORD.encode())
        )
        assert b"941" == answer
        return [terminal.exchange(frame) for frame in frames]


def set_institution(target: SipTarget, **settings: Any) -> None:
    """Change the test institution's settings."""
    with target.library.database.transaction() as session:
        session.execute(sa.update(Institution).values(**settings))


@pytest_twisted.inlineCallbacks
def test_hq_gives_the_patrons_place_in_each_queue_beside_cd(
    queue_target: SipTarget,
) -> Any:
    """Ben is 2nd of 3 for volume 01 (behind Ada's title hold, ahead of Carl's
    copy hold) and 1st of 1 for volume 02; his hold in transit (CD, the item)
    and his hold on the shelf (AS) get no HQ; a page (BP/BQ) gets the HQ of its
    own entries only; without CD asked for there is no HQ; Carl, 3rd of 3, is
    named by his copy's barcode, as in CD."""
    placing = [
        hold_frame(b"+", ADA, item=ITEMS[0]),
        hold_frame(b"+", BEN, item=ITEMS[0]),
        hold_frame(b"+", BEN, item=ITEMS[1]),
        hold_frame(b"+", BEN, item=ITEMS[2]),
        hold_frame(b"+", BEN, item=ITEMS[3], pickup=b"WEST"),
        # Volume 03 waits here for Ben; volume 04 travels to WEST for him.
        checkin_frame(ITEMS[2]),
        checkin_frame(ITEMS[3]),
    ]
    placed = yield in_thread(as_account, queue_target, LOGIN, placing)
    assert all(reply.startswith(b"161") for reply in placed[:5]), placed
    # Carl holds the one copy of volume 01 (item level), after Ben.
    Circulation(queue_target.library.database).place_hold(
        CARL, item_barcode=ITEMS[0], pickup_branch_code="NORTH", item_level=True
    )
    asking = [
        info_frame(BEN, b"Y    Y    "),
        info_frame(BEN, b"     Y    ", start=2, end=3),
        info_frame(BEN, b"Y         "),
        info_frame(CARL, b"     Y    "),
    ]
    both, page, ready_only, carl = yield in_thread(
        as_account, queue_target, LOGIN, asking
    )

    fields = all_fields(both, FIXED_64)
    assert [ITEMS[2].encode()] == fields[b"AS"]
    assert [
        b"Tide Tables, volume 01",
        b"Tide Tables, volume 02",
        ITEMS[3].encode(),
    ] == fields[b"CD"]
    assert [b"2/3 Tide Tables, volume 01", b"1/1 Tide Tables, volume 02"] == fields[
        b"HQ"
    ]
    # HQ is an extension: it comes after every field of the spec.
    assert both.rindex(b"|HQ") > both.rindex(b"|CD")

    page_fields = all_fields(page, FIXED_64)
    assert [b"Tide Tables, volume 02", ITEMS[3].encode()] == page_fields[b"CD"]
    assert [b"1/1 Tide Tables, volume 02"] == page_fields[b"HQ"]
    assert b"HQ" not in all_fields(ready_only, FIXED_64)
    # Carl's hold is on one copy: CD names it by its barcode, and so does HQ.
    carl_fields = all_fields(carl, FIXED_64)
    assert [ITEMS[0].encode()] == carl_fields[b"CD"]
    assert [b"3/3 " + ITEMS[0].encode()] == carl_fields[b"HQ"]


@pytest_twisted.inlineCallbacks
def test_hq_follows_the_accounts_hide_and_allow_lists(
    queue_target: SipTarget,
) -> Any:
    """An account hiding HQ gets CD without HQ; one whose allow list lacks HQ
    too; the default account gets both."""
    frames = [hold_frame(b"+", BEN, item=ITEMS[0]), info_frame(BEN, b"     Y    ")]
    _placed, default = yield in_thread(as_account, queue_target, LOGIN, frames)
    ask = [info_frame(BEN, b"     Y    ")]
    (hidden,) = yield in_thread(as_account, queue_target, HIDING, ask)
    (allowed,) = yield in_thread(as_account, queue_target, ALLOWING, ask)

    assert [b"1/1 Tide Tables, volume 01"] == all_fields(default, FIXED_64)[b"HQ"]
    for reply in (hidden, allowed):
        fields = all_fields(reply, FIXED_64)
        assert [b"Tide Tables, volume 01"] == fields[b"CD"]
        assert b"HQ" not in fields


@pytest_twisted.inlineCallbacks
def test_64_sends_the_limits_the_core_has_and_only_those(
    queue_target: SipTarget,
) -> Any:
    """With no institution limits only CB (the ADULT rule's 3 loans) is sent;
    with max holds 4, overdue limit 2 and fee limit 500 pence the 64 has BZ
    0004, CA 0002, CB 0003 and CC 5.00; an overdue limit of 0 (any overdue
    blocks) is CA 0001; in yen (no minor unit) 500 is CC 500."""
    ask = [info_frame(ADA, b"          ")]
    (bare,) = yield in_thread(as_account, queue_target, LOGIN, ask)
    set_institution(queue_target, max_holds=4, overdue_limit=2, fee_limit_minor=500)
    (limited,) = yield in_thread(as_account, queue_target, LOGIN, ask)
    set_institution(queue_target, overdue_limit=0, currency="JPY")
    (yen,) = yield in_thread(as_account, queue_target, LOGIN, ask)

    bare_fields = all_fields(bare, FIXED_64)
    assert b"0003" == one(bare, FIXED_64, b"CB")
    for code in (b"BZ", b"CA", b"CC"):
        assert code not in bare_fields
    assert b"0004" == one(limited, FIXED_64, b"BZ")
    assert b"0002" == one(limited, FIXED_64, b"CA")
    assert b"0003" == one(limited, FIXED_64, b"CB")
    assert b"5.00" == one(limited, FIXED_64, b"CC")
    assert b"GBP" == one(limited, FIXED_64, b"BH")
    assert b"0001" == one(yen, FIXED_64, b"CA")
    assert b"500" == one(yen, FIXED_64, b"CC")
    assert b"JPY" == one(yen, FIXED_64, b"BH")
