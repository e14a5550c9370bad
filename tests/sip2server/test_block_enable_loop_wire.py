"""Block patron (01) and patron enable (25) sent in turn on one card (issue #5,
trial 3 B1): the terminal's one block row is opened again rather than a row
added per pair, and the 01 note is stored without control characters. On a
real server on loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest_twisted
import sqlalchemy as sa

from ils.models import Patron, PatronBlock
from tests.sip2server.conftest import ADA, SipTarget
from tests.sip2server.test_block_repeat_wire import block_frame
from tests.sip2server.test_mapping_checkin import in_thread, talk
from tests.sip2server.test_terminal_messages import enable_frame


def ada_blocks(target: SipTarget) -> list[tuple[str, str, bool]]:
    """Every block row on Ada's card: (placed_by, note, open), in id order."""
    with target.library.database.read() as session:
        rows = session.execute(
            sa.select(PatronBlock.placed_by, PatronBlock.note, PatronBlock.lifted_at)
            .join(Patron, Patron.id == PatronBlock.patron_id)
            .where(Patron.barcode == ADA)
            .order_by(PatronBlock.id)
        ).all()
    return [(by, note, lifted is None) for by, note, lifted in rows]


@pytest_twisted.inlineCallbacks
def test_block_and_enable_in_turn_keep_one_row(sip_target: SipTarget) -> Any:
    """Thirty 01/25 pairs and a last 01 leave one kiosk1 row on the card, open,
    with the last note; every 01 is answered 24 and every 25 is answered 26."""
    frames: list[bytes] = []
    for n in range(30):
        frames += [block_frame(b"loop %d" % n), enable_frame(ADA)]
    frames.append(block_frame(b"last"))
    replies = yield in_thread(talk, sip_target, frames)

    assert [b"24", b"26"] * 30 + [b"24"] == [reply[:2] for reply in replies]
    assert [("terminal:kiosk1", "last", True)] == ada_blocks(sip_target)


@pytest_twisted.inlineCallbacks
def test_after_an_enable_the_card_is_lifted_until_the_next_block(
    sip_target: SipTarget,
) -> Any:
    """The reused row really is lifted by 25 and in force again after 01: the
    row reads lifted after the pair, open after the next 01."""
    yield in_thread(talk, sip_target, [block_frame(b"one"), enable_frame(ADA)])
    assert [("terminal:kiosk1", "one", False)] == ada_blocks(sip_target)

    yield in_thread(talk, sip_target, [block_frame(b"two")])
    assert [("terminal:kiosk1", "two", True)] == ada_blocks(sip_target)


@pytest_twisted.inlineCallbacks
def test_control_characters_are_dropped_from_the_note(sip_target: SipTarget) -> Any:
    """An AL of ESC [31m, NUL, "alarm", BEL, a tab and "rang" is stored as
    "[31malarm rang": the escape, NUL and bell go, the tab parts the words."""
    note = b"\x1b[31m\x00alarm\x07\trang"
    replies = yield in_thread(talk, sip_target, [block_frame(note)])

    assert replies[0].startswith(b"24")
    assert [("terminal:kiosk1", "[31malarm rang", True)] == ada_blocks(sip_target)
