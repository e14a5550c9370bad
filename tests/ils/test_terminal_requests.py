"""Blocks, enables and item notes requested by terminals, on real databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from ils.circulation import Circulation
from ils.models import CirculationLog, Item, LoanEvent, PatronBlock
from ils.results import CirculationRefused, Refusal
from ils.terminal_requests import TerminalRequests
from tests.ils.factories import Library, SettableClock, build_library

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def library(database_url: str) -> Iterator[Library]:
    """The test library on each engine in turn, with one patron and one item."""
    built = build_library(database_url)
    built.add_patron("P1")
    built.add_item("I1")
    yield built
    built.database.dispose()


@pytest.fixture
def requests(library: Library) -> TerminalRequests:
    """The service at a fixed time."""
    return TerminalRequests(library.database, clock=SettableClock(NOW))


def test_a_terminal_block_stops_borrowing_and_says_why(
    library: Library, requests: TerminalRequests
) -> None:
    """A kiosk that kept a card blocks it; the block names the kiosk and the reason."""
    result = requests.block_patron(
        "P1", note="  card  left in\tslot ", terminal="kiosk1", card_retained=True
    )

    assert "card left in slot (card retained by the terminal)" == result.note
    circulation = Circulation(library.database, clock=SettableClock(NOW))
    patron = circulation.patron("P1")
    assert patron is not None
    assert patron.blocked
    assert (result.note,) == patron.block_notes
    with library.database.read() as session:
        placed_by = session.scalars(sa.select(PatronBlock.placed_by)).one()
        logged = session.scalars(
            sa.select(CirculationLog.event).where(CirculationLog.patron_id.is_not(None))
        ).all()
    assert "terminal:kiosk1" == placed_by
    assert [LoanEvent.PATRON_BLOCKED] == list(logged)


def test_enable_lifts_only_the_blocks_terminals_placed(
    library: Library, requests: TerminalRequests
) -> None:
    """Staff's block stays when a terminal enables the card; the terminal's goes."""
    library.add_patron("P2", block_note="unpaid replacement card")
    requests.block_patron("P2", note="seen at two kiosks", terminal="kiosk1")

    result = requests.enable_patron("P2", terminal="kiosk2")

    assert (1, 1) == (result.lifted, result.still_blocked)
    with library.database.read() as session:
        open_notes = session.scalars(
            sa.select(PatronBlock.note).where(PatronBlock.lifted_at.is_(None))
        ).all()
    assert ["unpaid replacement card"] == list(open_notes)


def test_enable_without_blocks_lifts_nothing(requests: TerminalRequests) -> None:
    """Enabling a card nobody blocked changes nothing and says so."""
    result = requests.enable_patron("P1", terminal="kiosk1")
    assert (0, 0) == (result.lifted, result.still_blocked)


def test_item_properties_are_stored_and_replaced(
    library: Library, requests: TerminalRequests
) -> None:
    """A second update replaces the first note; whitespace runs are folded."""
    requests.store_item_properties("I1", "bin 4", terminal="sorter")
    stored = requests.store_item_properties("I1", "  shelf\n 12 ", terminal="sorter")

    assert "shelf 12" == stored
    with library.database.read() as session:
        properties = session.scalar(sa.select(Item.properties))
    assert "shelf 12" == properties


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda r: r.block_patron("NOPE", note="x", terminal="k"), "unknown_patron"),
        (lambda r: r.enable_patron("NOPE", terminal="k"), "unknown_patron"),
        (lambda r: r.store_item_properties("NOPE", "x", terminal="k"), "unknown_item"),
    ],
)
def test_unknown_cards_and_items_are_refused(
    requests: TerminalRequests, call: object, reason: str
) -> None:
    """An unknown barcode is refused with its own reason and nothing is written."""
    assert callable(call)
    with pytest.raises(CirculationRefused) as raised:
        call(requests)
    assert Refusal(reason) is raised.value.reason
