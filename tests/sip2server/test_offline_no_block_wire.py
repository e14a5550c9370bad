"""No block on the wire: 11 and 09 sent with no block Y (a terminal reporting
what it did offline) are recorded at their own time, over the loan limit, on
SQLite and PostgreSQL; what is impossible still refuses, and requests without
no block are judged as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest_twisted
import sqlalchemy as sa

from ils.circulation import Circulation
from ils.fees import FeeService
from ils.models import CirculationLog, FeeKind, Item, Loan, LoanEvent, LoanRule
from tests.sip2server.conftest import (
    ADA,
    BEN,
    ITEMS,
    SipTarget,
    accounts_config,
    serving,
)
from tests.sip2server.conftest import stock_library as stock
from tests.sip2server.test_mapping_checkin import FIXED_12, in_thread, one
from tests.sip2server.test_wire_behaviour import RawTerminal

# The test library's branch NORTH keeps London time; SIP2 dates without a zone
# are its local time.
LONDON = ZoneInfo("Europe/London")
# A patron returning late, charged 10 pence a day by the test's rule.
LATE = "21234000000091"
FINE_PER_DAY = 10


def sip_date(moment: datetime) -> bytes:
    """A SIP2 date in the branch's local time (four blanks for the zone)."""
    return moment.astimezone(LONDON).strftime("%Y%m%d    %H%M%S").encode()


def checkout_frame(
    patron: str, item: str, *, no_block: bool, at: datetime, nb_due: bytes = b""
) -> bytes:
    """11 with renewal policy N, the given no block flag and transaction date."""
    return (
        b"11N"
        + (b"Y" if no_block else b"N")
        + sip_date(at)
        + (nb_due or b" " * 18)
        + b"AOCITY|AA"
        + patron.encode()
        + b"|AB"
        + item.encode()
        + b"|AC|\r"
    )


def checkin_frame(item: str, *, no_block: bool, returned: datetime) -> bytes:
    """09 with the given no block flag, dated now, with `returned` as return date."""
    return (
        b"09"
        + (b"Y" if no_block else b"N")
        + sip_date(datetime.now(UTC))
        + sip_date(returned)
        + b"APNORTH|AOCITY|AB"
        + item.encode()
        + b"|AC|\r"
    )


def as_account(target: SipTarget, login: str, frames: list[bytes]) -> list[bytes]:
    """Log in as `login` and send each frame in turn; the replies."""
    with RawTerminal(target) as terminal:
        answer = terminal.exchange(
            b"9300CN%s|CO%s-secret|CPNORTH|\r" % (login.encode(), login.encode())
        )
        assert b"941" == answer
        return [terminal.exchange(frame) for frame in frames]


@pytest_twisted.async_yield_fixture
async def offline_target(database_url: str) -> AsyncIterator[SipTarget]:
    """A server with a kiosk account that records no-block checkouts within 7
    days ("kiosk") and one with the defaults, which refuse them ("strict"); Ada
    at her loan limit of three, and a patron with a loan made 20 days ago (due
    6 days ago), fined 10 pence a day."""
    library = stock(database_url)
    library.add_patron(LATE, surname="Ito")
    circulation = Circulation(library.database)
    for item in ITEMS[:3]:
        circulation.checkout(ADA, item, branch_code="NORTH")
    circulation.checkout(LATE, ITEMS[6], branch_code="NORTH", at=_twenty_days_ago())
    circulation.checkout(LATE, ITEMS[7], branch_code="NORTH", at=_twenty_days_ago())
    circulation.checkout(LATE, ITEMS[8], branch_code="NORTH", at=_twenty_days_ago())
    with library.database.transaction() as session:
        session.execute(sa.update(LoanRule).values(fine_minor=FINE_PER_DAY))

    accounts = [
        # A kiosk with an offline journal: its account says so.
        {
            "login": "kiosk",
            "policy": {"no_block_checkouts": "record", "offline_days": 7},
        },
        # The defaults: no block is ignored, nothing is backdated.
        {"login": "strict"},
    ]
    config = accounts_config(
        database_url,
        [{"password": f"{account['login']}-secret"} | account for account in accounts],
    )
    async with serving(library, config) as running:
        yield running


def _twenty_days_ago() -> datetime:
    """Noon, London time, 20 days before today: a 14-day loan due 6 days ago."""
    day = datetime.now(LONDON).date() - timedelta(days=20)
    return datetime.combine(day, time(12), tzinfo=LONDON)


# A loan's times: when it began, when it is due, when it ended (None: open).
Times = tuple[datetime, datetime, datetime | None]


def _loan_times(target: SipTarget, item: str, *, open_only: bool) -> Times | None:
    """The times of the item's open loan, or of its latest loan."""
    query = (
        sa.select(Loan.checked_out_at, Loan.due_at, Loan.returned_at)
        .join(Item, Item.id == Loan.item_id)
        .where(Item.barcode == item)
        .order_by(Loan.id.desc())
        .limit(1)
    )
    if open_only:
        query = query.where(Loan.returned_at.is_(None))
    with target.library.database.read() as session:
        row = session.execute(query).one_or_none()
    if row is None:
        return None
    began, due, ended = row
    return (
        began.astimezone(UTC),
        due.astimezone(UTC),
        None if ended is None else ended.astimezone(UTC),
    )


def _checkout_details(target: SipTarget, item: str) -> list[str]:
    with target.library.database.read() as session:
        return [
            row or ""
            for row in session.scalars(
                sa.select(CirculationLog.detail)
                .join(Item, Item.id == CirculationLog.item_id)
                .where(Item.barcode == item, CirculationLog.event == LoanEvent.CHECKOUT)
            )
        ]


def _fines(target: SipTarget, patron: str) -> list[int]:
    fees = FeeService(target.library.database).fees_of(patron, include_settled=True)
    return sorted(fee.amount_minor for fee in fees if fee.kind is FeeKind.OVERDUE)


@pytest_twisted.inlineCallbacks
def test_no_block_checkout_over_the_limit_is_recorded_at_its_time(
    offline_target: SipTarget,
) -> Any:
    """Ada is at her limit of three: a live 11 is refused, one with no block Y is
    recorded, starting at its transaction date and due 14 days after that day,
    with the override in its log row; an unknown item and a strict account's
    no-block 11 are still refused."""
    lent_at = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    frames = [
        checkout_frame(ADA, ITEMS[3], no_block=False, at=datetime.now(UTC)),
        checkout_frame(ADA, ITEMS[3], no_block=True, at=lent_at),
        checkout_frame(ADA, "39999999999999", no_block=True, at=lent_at),
    ]
    live, offline, unknown = yield in_thread(
        as_account, offline_target, "kiosk", frames
    )
    (strict,) = yield in_thread(
        as_account,
        offline_target,
        "strict",
        [checkout_frame(ADA, ITEMS[4], no_block=True, at=lent_at)],
    )

    assert live.startswith(b"120N")
    assert offline.startswith(b"121N")
    assert unknown.startswith(b"120N")
    assert strict.startswith(b"120N")
    assert _loan_times(offline_target, ITEMS[4], open_only=True) is None

    loan = _loan_times(offline_target, ITEMS[3], open_only=True)
    assert loan is not None
    began, due_at, _ended = loan
    assert lent_at == began
    # 14 days from the local day it was lent, due at the end of that day.
    due_day = lent_at.astimezone(LONDON).date() + timedelta(days=14)
    assert due_day == due_at.astimezone(LONDON).date()
    due = one(offline, FIXED_12, b"AH")
    assert due is not None
    assert due_day.strftime("%Y%m%d").encode() in due
    (detail,) = _checkout_details(offline_target, ITEMS[3])
    assert "offline, recorded over: max_loans_reached" in detail


@pytest_twisted.inlineCallbacks
def test_no_block_checkout_keeps_a_sane_terminal_due_date(
    offline_target: SipTarget,
) -> Any:
    """The terminal's own due date (nb due date) is kept when it falls after the
    checkout and within the rule's 14 days; a later one gives the rule's."""
    lent_at = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
    lent_day = lent_at.astimezone(LONDON).date()
    told = datetime.combine(lent_day + timedelta(days=10), time(17), tzinfo=LONDON)
    too_late = datetime.combine(lent_day + timedelta(days=40), time(17), tzinfo=LONDON)
    frames = [
        checkout_frame(BEN, ITEMS[4], no_block=True, at=lent_at, nb_due=sip_date(told)),
        checkout_frame(
            BEN, ITEMS[5], no_block=True, at=lent_at, nb_due=sip_date(too_late)
        ),
    ]
    kept, ruled = yield in_thread(as_account, offline_target, "kiosk", frames)

    assert kept.startswith(b"121N")
    assert ruled.startswith(b"121N")
    kept_loan = _loan_times(offline_target, ITEMS[4], open_only=True)
    ruled_loan = _loan_times(offline_target, ITEMS[5], open_only=True)
    assert kept_loan is not None
    assert ruled_loan is not None
    assert told.astimezone(UTC) == kept_loan[1]
    assert lent_day + timedelta(days=14) == ruled_loan[1].astimezone(LONDON).date()


@pytest_twisted.inlineCallbacks
def test_no_block_checkin_ends_the_loan_at_its_return_date(
    offline_target: SipTarget,
) -> Any:
    """Three loans due 6 days ago: a no-block return dated 3 days ago ends then
    and is fined 3 days (30p); one dated 10 days ago (beyond the 7-day window)
    and a live return dated 3 days ago (the default offline_return_days is 0)
    are both dated now and fined 6 days (60p each)."""
    started = datetime.now(UTC)
    three_days_ago = (started - timedelta(days=3)).replace(microsecond=0)
    frames = [
        checkin_frame(ITEMS[6], no_block=True, returned=three_days_ago),
        checkin_frame(ITEMS[7], no_block=True, returned=started - timedelta(days=10)),
        checkin_frame(ITEMS[8], no_block=False, returned=three_days_ago),
    ]
    replies = yield in_thread(as_account, offline_target, "kiosk", frames)

    assert all(reply.startswith(b"101") for reply in replies)
    first = _loan_times(offline_target, ITEMS[6], open_only=False)
    assert first is not None
    assert three_days_ago == first[2]
    for item in ITEMS[7:9]:
        loan = _loan_times(offline_target, item, open_only=False)
        assert loan is not None
        assert loan[2] is not None
        assert loan[2] >= started
    # Due day: 20 days ago + 14 = 6 days ago. Back 3 days ago: 3 days late.
    assert [3 * FINE_PER_DAY, 6 * FINE_PER_DAY, 6 * FINE_PER_DAY] == _fines(
        offline_target, LATE
    )
