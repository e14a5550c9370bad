"""Block patron (01) sent again and again (issue #5, trial 2 F14): one open block
per card and terminal, answered with the same 24 each time. On a real server on
loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest_twisted
import sqlalchemy as sa

from ils.models import Patron, PatronBlock
from ils.staff import StaffDesk
from tests.sip2server.conftest import ADA, SipTarget
from tests.sip2server.test_mapping_checkin import FIXED_24, all_fields, in_thread, talk
from tests.sip2server.test_wire_behaviour import sip_now


def block_frame(note: bytes) -> bytes:
    """01: card retained N, date, then AO, AL, AA, AC."""
    return b"01N" + sip_now() + b"AOCITY|AL" + note + b"|AA" + ADA.encode() + b"|AC|\r"


@pytest_twisted.inlineCallbacks
def test_two_hundred_blocks_leave_one_open_terminal_block(
    sip_target: SipTarget,
) -> Any:
    """The trial's repro: 200 01s with a 7,000-character AL from kiosk1 leave
    one open kiosk1 block with a 500-character note beside staff's block; each
    24 says the card is valid, its name, and charge privileges denied (Y)."""
    StaffDesk(sip_target.library.database).block(ADA, note="lost card", by="alice")
    frames = [block_frame(b"x" * 7000) for _ in range(199)]
    frames.append(block_frame(b"last try"))
    replies = yield in_thread(talk, sip_target, frames)

    assert 200 == len(replies)
    for reply in replies:
        assert reply.startswith(b"24Y")
        fields = all_fields(reply, FIXED_24)
        assert [b"Y"] == fields[b"BL"]
        assert [b"Ada Okafor"] == fields[b"AE"]
    with sip_target.library.database.read() as session:
        rows = session.execute(
            sa.select(PatronBlock.placed_by, PatronBlock.note)
            .join(Patron, Patron.id == PatronBlock.patron_id)
            .where(Patron.barcode == ADA, PatronBlock.lifted_at.is_(None))
            .order_by(PatronBlock.id)
        ).all()
    assert [("alice", "lost card"), ("terminal:kiosk1", "last try")] == [
        tuple(row) for row in rows
    ]


@pytest_twisted.inlineCallbacks
def test_the_kept_note_is_the_latest_cut_to_500(sip_target: SipTarget) -> Any:
    """A second 01 replaces the first note; a 7,000-character AL is kept as its
    first 500 characters."""
    frames = [block_frame(b"first"), block_frame(b"y" * 7000)]
    yield in_thread(talk, sip_target, frames)

    with sip_target.library.database.read() as session:
        notes = session.scalars(
            sa.select(PatronBlock.note).where(PatronBlock.lifted_at.is_(None))
        ).all()
    # The stock library's BLOCKED patron has staff's "Unpaid bills".
    assert sorted(["Unpaid bills", "y" * 500]) == sorted(notes)
