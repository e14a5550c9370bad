"""A return sent online whose reply never comes is kept for staff, never replayed.

Finding N-I of the second adversarial trial of issue #6: such a return used to
be journalled as offline and replayed later, and when the book had been lent
again meanwhile the replay closed the new borrower's loan. The server here is
a small one on loopback that logs the kiosk in and then never answers; the
link's timers run on a `Clock`.
"""

from __future__ import annotations

from pathlib import Path

import pytest_twisted
from twisted.internet import defer, protocol
from twisted.internet.task import Clock

from kiosk.i18n import Catalogues
from kiosk.journal import EntryKind, EntryState, Journal
from kiosk.present import Presenter
from kiosk.sipclient import LinkState
from kiosk.transactions import Action, Result, SipDesk
from kiosk.wording import Refusal, Wording
from tests.kiosk.conftest import ITEMS, kiosk_config
from tests.kiosk.test_sipclient import (
    _reactor,
    _SilentAfterLogin,
    make_link,
    reached,
)


@pytest_twisted.ensureDeferred
async def test_a_return_whose_reply_never_came_is_for_staff_not_for_a_replay(
    tmp_path: Path,
) -> None:
    """The patron is asked to hand the item in at the desk; the journal holds it
    as unknown ("check it by hand"), with nothing pending to replay."""
    listening = _reactor().listenTCP(
        0, protocol.Factory.forProtocol(_SilentAfterLogin), interface="127.0.0.1"
    )
    port = listening.getHost().port
    config = kiosk_config(port, tmp_path)
    clock = Clock()
    link = make_link(port, tmp_path, clock)
    journal = Journal(config.offline.journal)
    desk = SipDesk(config, link, Wording.load(), journal)
    try:
        link.start()
        clock.advance(0)
        await reached(link, LinkState.ONLINE)
        returning = defer.ensureDeferred(desk.give_back(ITEMS[0]))
        clock.advance(config.server.timeout)
        outcome = await returning
        pending = journal.pending()
        (entry,) = journal.results()
    finally:
        link.stop()
        journal.close()
        await defer.maybeDeferred(listening.stopListening)

    assert (Action.RETURN, Result.REFUSED, Refusal.RETURN_UNCONFIRMED) == (
        outcome.action,
        outcome.result,
        outcome.refusal,
    )
    assert [] == pending
    assert (EntryKind.RETURN, ITEMS[0], EntryState.UNKNOWN) == (
        entry.kind,
        entry.item,
        entry.state,
    )
    assert entry.result.endswith("check it by hand")
    words = Presenter(Catalogues(["en"]), Wording.load())
    assert (
        "The library system did not confirm this return. "
        "Please hand the item in at the desk." == words.row("en", outcome).detail
    )
