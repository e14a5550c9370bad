"""Terminals racing each other through the server, on SQLite and on PostgreSQL.

Each terminal is its own thread with its own TCP connection, logged in before
a barrier releases them all at once. The reactor's default thread pool is
smaller than the number of terminals, so the terminals run in a pool of their
own inside one `deferToThread` call.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest_twisted
import sqlalchemy as sa

from ils.models import Item, Loan, Patron
from sip2server.protocol import CheckoutResponse, decode
from tests.sip2server.conftest import ADA, ITEMS, SipTarget
from tests.sip2server.test_wire_behaviour import RawTerminal, checkout_body, in_thread

# How long the barrier waits for every terminal to be connected and logged in.
START_TIMEOUT = 60.0


def _race(
    target: SipTarget, plans: list[tuple[str, list[str]]]
) -> list[list[tuple[str, bytes]]]:
    """Run one terminal per (patron, items) plan at once; the replies of each."""
    barrier = threading.Barrier(len(plans), timeout=START_TIMEOUT)

    def terminal_run(patron: str, items: list[str]) -> list[tuple[str, bytes]]:
        with RawTerminal(target) as terminal:
            terminal.login()
            barrier.wait()
            # As fast as the server answers: one request per reply, no pause.
            return [
                (item, terminal.exchange(checkout_body(patron, item) + b"\r"))
                for item in items
            ]

    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        futures = [pool.submit(terminal_run, *plan) for plan in plans]
        return [future.result(timeout=START_TIMEOUT * 2) for future in futures]


def _open_loans(target: SipTarget) -> list[tuple[str, str]]:
    """(item barcode, patron barcode) of every open loan."""
    with target.library.database.read() as session:
        rows = session.execute(
            sa.select(Item.barcode, Patron.barcode)
            .join(Loan, Loan.item_id == Item.id)
            .join(Patron, Loan.patron_id == Patron.id)
            .where(Loan.returned_at.is_(None))
        ).all()
    return sorted((item, patron) for item, patron in rows)


def _checkout_response(payload: bytes) -> CheckoutResponse:
    message = decode(payload).message
    assert isinstance(message, CheckoutResponse), payload
    return message


@pytest_twisted.inlineCallbacks
def test_twelve_terminals_racing_for_four_items_leave_one_loan_each(
    sip_target: SipTarget,
) -> Any:
    """Twelve patrons checking out the same four items at once get one loan per item."""
    contested = ITEMS[:4]
    patrons = [f"2123410000{n:04d}" for n in range(1, 13)]
    for number, barcode in enumerate(patrons, start=1):
        # CHILD: the catch-all rule allows 10 loans, so no limit interferes.
        sip_target.library.add_patron(
            barcode, surname=f"Racer{number}", category="CHILD"
        )
    # Each terminal starts at a different item, so every item is fought over
    # from the first request on.
    plans = [
        (patron, contested[index % 4 :] + contested[: index % 4])
        for index, patron in enumerate(patrons)
    ]

    def run() -> tuple[list[list[tuple[str, bytes]]], list[tuple[str, str]]]:
        return _race(sip_target, plans), _open_loans(sip_target)

    replies, loans = yield in_thread(run)

    granted = []
    for (patron, _), terminal_replies in zip(plans, replies, strict=True):
        for item, payload in terminal_replies:
            response = _checkout_response(payload)
            assert patron == response.patron_identifier
            assert item == response.item_identifier
            if response.ok:
                granted.append((item, patron))
    assert 4 == len(granted), granted
    assert sorted(granted) == loans
    assert contested == [item for item, _ in loans]


@pytest_twisted.inlineCallbacks
def test_one_patron_on_six_terminals_cannot_pass_the_loan_limit(
    sip_target: SipTarget,
) -> Any:
    """Six connections of one adult (limit 3) racing for twelve items get 3 loans."""
    # Two distinct items per terminal: no terminal asks for another's item, so
    # no request can turn into a renewal.
    plans = [(ADA, ITEMS[2 * n : 2 * n + 2]) for n in range(6)]

    def run() -> tuple[list[list[tuple[str, bytes]]], list[tuple[str, str]]]:
        return _race(sip_target, plans), _open_loans(sip_target)

    replies, loans = yield in_thread(run)

    responses = [
        _checkout_response(payload)
        for terminal_replies in replies
        for _, payload in terminal_replies
    ]
    granted = sorted(response.item_identifier for response in responses if response.ok)
    refused = [response for response in responses if not response.ok]
    assert 3 == len(granted), granted
    assert [(item, ADA) for item in granted] == loans
    assert 9 == len(refused)
    for response in refused:
        assert any(
            "as many items as you may" in text for text in response.screen_message
        )
