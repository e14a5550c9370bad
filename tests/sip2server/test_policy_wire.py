"""Per-account terminal policy on the wire: a sorter's bins and routing fields,
a kiosk's checkout refusals, field templates, hiding and rewrites, a gate's
security markers and allowed fields, and institution defaults under account
overrides. One server per test with three accounts, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_twisted
import sqlalchemy as sa
from click.testing import CliRunner

from ils.circulation import Circulation
from ils.fees import FeeService
from ils.models import FeeKind, Item, ItemStatus, LoanRule
from sip2server.config import parse_config
from sip2server.sortbin_command import sort_bin
from tests.sip2server.conftest import (
    ADA,
    BEN,
    INSTITUTION,
    ITEMS,
    PIN,
    REFERENCE_ITEM,
    SipTarget,
    serving,
    stock_library,
)
from tests.sip2server.test_fees_wire import pay_frame, status_frame
from tests.sip2server.test_mapping_checkin import (
    FIXED_10,
    FIXED_12,
    FIXED_18,
    FIXED_24,
    FIXED_38,
    all_fields,
    checkin_frame,
    hold_frame,
    in_thread,
    item_frame,
    one,
)
from tests.sip2server.test_wire_behaviour import RawTerminal, checkout_body

CHILD = "21234000000059"
LATE = "21234000000067"
LOSER = "21234000000075"
OFFLINE = "21234000000083"
DVD = "39999000000050"

SORT_BINS = [
    {"bin": "HOLDS-AWAY", "when": ["hold = yes", "pickup_branch != NORTH"]},
    {"bin": "HOLDS", "when": ["hold = yes"]},
    {"bin": "TRANSIT", "when": ["transit = yes"]},
    {"bin": "NONFIC", "when": ["call_number >= 800"]},
    {"bin": "REST"},
]

ACCOUNTS: list[dict[str, Any]] = [
    {
        "login": "sorter",
        "policy": {
            "sort_bin": SORT_BINS,
            "cv_on_success_00": True,
            "always_send_ct": True,
            "hold_patron_id": "full",
            "hold_patron_name": "{patron.full_name}",
            "checkin_not_on_loan_ok": False,
            "offline_return_days": 30,
            # Overrides the institution's hide_fields: CK is sent here.
            "hide_fields": [],
        },
    },
    {
        "login": "kiosk",
        "policy": {
            "blocked_item_types": ["DVD"],
            "inhouse_item_types": ["REF"],
            "inhouse_patron_categories": ["CHILD"],
            "overdues_block_checkout": True,
            "lost_items_block_checkout": True,
            "screen_messages": {
                "item_type_blocked": "No {item.item_type_code}s here, sorry."
            },
            "screen_rewrites": [
                {"pattern": "please ask staff", "replace": "please see the desk"}
            ],
            "patron_fields": {
                "PB": "{patron.home_branch_code}",
                "XZ": "{patron.category_code}-{patron.barcode_last4}",
            },
            "item_fields": {"XI": "{item.item_type_code}"},
            "currency": "EUR",
        },
    },
    {
        "login": "gate",
        "policy": {
            "security_markers": {"REF": "01"},
            "status_security_markers": {"lost": "00"},
            "holds_block_checkin": True,
            "allow_fields": ["CF", "AH", "CV"],
        },
    },
]


def policy_config(database_url: str, tmp_path: Path) -> dict[str, Any]:
    """The server configuration: three accounts at NORTH and institution defaults."""
    return {
        "server": {"listen": ["tcp:0:interface=127.0.0.1"], "threads": 8},
        "database": {"url": database_url},
        "institution": {
            INSTITUTION: {
                "location": "NORTH",
                "policy": {"security_marker": "03", "hide_fields": ["CK"]},
            }
        },
        "accounts": [
            {"password": f"{account['login']}-secret", "institution": INSTITUTION}
            | account
            for account in ACCOUNTS
        ],
    }


@pytest_twisted.async_yield_fixture
async def policy_target(database_url: str, tmp_path: Path) -> AsyncIterator[SipTarget]:
    """A running server with the three policy accounts and a few special patrons."""
    library = stock_library(database_url)
    library.add_patron(CHILD, surname="Moana", category="CHILD", pin=PIN)
    library.add_patron(LATE, surname="Ito", pin=PIN)
    library.add_patron(LOSER, surname="Novak", pin=PIN)
    library.add_patron(OFFLINE, surname="Sato", pin=PIN)
    library.add_item(DVD, title="Deep Water", item_type="DVD")
    circulation = Circulation(library.database)
    ago = datetime.now(UTC) - timedelta(days=30)
    circulation.checkout(LATE, ITEMS[10], branch_code="NORTH", at=ago)
    circulation.checkout(LOSER, ITEMS[11], branch_code="NORTH")
    # Loans due six days ago, for returns dated back to before their due date.
    ago = datetime.now(UTC) - timedelta(days=20)
    circulation.checkout(OFFLINE, ITEMS[9], branch_code="NORTH", at=ago)
    circulation.checkout(BEN, ITEMS[8], branch_code="NORTH", at=ago)
    with library.database.transaction() as session:
        session.execute(sa.update(LoanRule).values(fine_minor=10))
        session.execute(
            sa.update(Item)
            .where(Item.barcode == ITEMS[11])
            .values(status=ItemStatus.LOST)
        )

    config = parse_config(policy_config(database_url, tmp_path), "<test>")
    async with serving(library, config) as running:
        yield running


def dated_checkin(item: str, days_ago: int) -> bytes:
    """09 with a return date `days_ago` days back, in local time (four blanks)."""
    now = datetime.now()
    then = (now - timedelta(days=days_ago)).strftime("%Y%m%d    %H%M%S").encode()
    return (
        b"09N"
        + now.strftime("%Y%m%d    %H%M%S").encode()
        + then
        + b"APNORTH|AOCITY|AB"
        + item.encode()
        + b"|AC|\r"
    )


def overdue_fines(target: SipTarget, patron: str) -> int:
    """The overdue fines charged to a patron so far, in minor units."""
    fees = FeeService(target.library.database).fees_of(patron, include_settled=True)
    return sum(fee.amount_minor for fee in fees if fee.kind is FeeKind.OVERDUE)


def as_account(target: SipTarget, login: str, frames: list[bytes]) -> list[bytes]:
    """Log in as `login` and send each frame in turn; the replies."""
    with RawTerminal(target) as terminal:
        answer = terminal.exchange(
            b"9300CN%s|CO%s-secret|CPNORTH|\r" % (login.encode(), login.encode())
        )
        assert b"941" == answer
        return [terminal.exchange(frame) for frame in frames]


@pytest_twisted.inlineCallbacks
def test_sorter_gets_bins_and_routing_fields(
    policy_target: SipTarget, tmp_path: Path
) -> Any:
    """The first matching rule gives CL; CV 00 on plain success, CT always, CY in
    full and DA from its template; a not-on-loan return is refused (CV 99); a
    return dated before the due date is not fined; and `ils sort-bin` explains
    the bin the trapped item would get."""
    frames = [
        hold_frame(b"+", BEN, item=ITEMS[0], pickup=b"WEST"),
        checkin_frame(ITEMS[0]),
        checkin_frame(ITEMS[1]),
        checkout_body(ADA, ITEMS[2]) + b"\r",
        checkin_frame(ITEMS[2]),
        dated_checkin(ITEMS[9], 10),
    ]
    replies = yield in_thread(as_account, policy_target, "sorter", frames)
    _held, trapped, not_lent, _lent, plain, offline = replies

    assert trapped.startswith(b"101YUY")
    assert b"HOLDS-AWAY" == one(trapped, FIXED_10, b"CL")
    assert b"02" == one(trapped, FIXED_10, b"CV")
    assert b"WEST" == one(trapped, FIXED_10, b"CT")
    assert BEN.encode() == one(trapped, FIXED_10, b"CY")
    assert b"Ben Lindqvist" == one(trapped, FIXED_10, b"DA")
    # CK (media type 001, a book) is sent: the account's hide_fields is empty.
    assert b"001" == one(trapped, FIXED_10, b"CK")

    # Not on loan and the policy says that is no success: ok 0, alert, CV 99.
    assert not_lent.startswith(b"100NUY")
    assert b"99" == one(not_lent, FIXED_10, b"CV")
    # "551.46 TUP" reads as 551.46 (the number it starts with), below NONFIC's
    # 800: REST.
    assert b"REST" == one(not_lent, FIXED_10, b"CL")

    assert plain.startswith(b"101YUN")
    assert b"00" == one(plain, FIXED_10, b"CV")
    assert b"NORTH" == one(plain, FIXED_10, b"CT")
    assert b"REST" == one(plain, FIXED_10, b"CL")

    # Returned offline ten days ago, before it was due: no fine.
    assert offline.startswith(b"101Y")
    assert 0 == overdue_fines(policy_target, OFFLINE)

    config = tmp_path / "sip2server.toml"
    config.write_text(
        "[database]\nurl = 'unused'\n[[accounts]]\nlogin = 'sorter'\n"
        "password = 'x'\ninstitution = 'CITY'\nlocation = 'NORTH'\n"
        "[accounts.policy]\nsort_bin = [\n"
        + "".join(
            f"  {{ bin = '{rule['bin']}', when = {rule.get('when', [])!r} }},\n"
            for rule in SORT_BINS
        )
        + "]\n"
    )
    result = CliRunner().invoke(
        sort_bin,
        ["--config", str(config), "--db", policy_target.library.database.url, ITEMS[0]],
    )
    assert 0 == result.exit_code, result.output
    assert "  hold           yes\n" in result.output
    assert "  pickup_branch  WEST\n" in result.output
    assert "  MATCH [0] bin HOLDS-AWAY: hold = yes and pickup_branch != NORTH\n" in (
        result.output
    )
    assert result.output.endswith("Sort bin (CL): HOLDS-AWAY\n")

    # A fact set by hand: the same item as if it held nothing and went nowhere.
    tried = CliRunner().invoke(
        sort_bin,
        [
            "--config",
            str(config),
            "--db",
            policy_target.library.database.url,
            "--fact",
            "hold=no",
            "--fact",
            "transit = no",
            ITEMS[0],
        ],
    )
    assert tried.output.endswith("Sort bin (CL): REST\n")
    unknown = CliRunner().invoke(
        sort_bin,
        ["--config", str(config), "--db", policy_target.library.database.url, "NOPE"],
    )
    assert 1 == unknown.exit_code
    assert "no item has the barcode 'NOPE'" in unknown.output


@pytest_twisted.inlineCallbacks
def test_kiosk_policies_refuse_checkouts_and_shape_fields(
    policy_target: SipTarget,
) -> Any:
    """Blocked item types, in-house items and categories, overdues and lost items
    each refuse a checkout with their screen message (reworded or rewritten as
    the policy says); a good checkout hides CK and adds XI; 24 adds PB and XZ
    from templates and says EUR; a 37 in GBP is refused."""
    frames = [
        checkout_body(ADA, DVD) + b"\r",
        checkout_body(ADA, REFERENCE_ITEM) + b"\r",
        checkout_body(CHILD, ITEMS[3]) + b"\r",
        checkout_body(LATE, ITEMS[3]) + b"\r",
        checkout_body(LOSER, ITEMS[3]) + b"\r",
        checkout_body(ADA, ITEMS[3]) + b"\r",
        status_frame(ADA, PIN),
        pay_frame(ADA, b"1.00"),
    ]
    replies = yield in_thread(as_account, policy_target, "kiosk", frames)
    dvd, reference, child, late, loser, lent, status, paid = replies

    def screen(reply: bytes) -> list[bytes]:
        return all_fields(reply, FIXED_12)[b"AF"]

    assert dvd.startswith(b"120")
    assert [b"No DVDs here, sorry."] == screen(dvd)
    assert reference.startswith(b"120")
    assert [
        b"This item is for use in the library only and cannot be taken out."
    ] == screen(reference)
    assert [b"This card is for use of items in the library only."] == screen(child)
    assert [b"Please return your overdue items before borrowing more."] == screen(late)
    assert [
        b"Borrowing is blocked while an item on this card is recorded lost; "
        b"please see the desk."
    ] == screen(loser)

    assert lent.startswith(b"121")
    assert one(lent, FIXED_12, b"CK") is None
    assert b"BOOK" == one(lent, FIXED_12, b"XI")

    assert b"NORTH" == one(status, FIXED_24, b"PB")
    assert b"ADULT-0018" == one(status, FIXED_24, b"XZ")
    assert b"EUR" == one(status, FIXED_24, b"BH")

    assert paid.startswith(b"38N")
    assert [b"That currency is not accepted here."] == all_fields(paid, FIXED_38)[b"AF"]


@pytest_twisted.inlineCallbacks
def test_gate_markers_allowed_fields_and_holds_blocking_checkin(
    policy_target: SipTarget,
) -> Any:
    """The institution's security marker 03 applies, REF items get 01 from the
    account, lost ones 00 by their status; only required fields, AF and the
    allowed CF/AH/CV are sent; a checkin of an item wanted for a hold is
    refused (CV 99) and a plain one is not; a dated return is dated now (and
    fined), since this account may not date returns."""
    frames = [
        item_frame(REFERENCE_ITEM),
        item_frame(ITEMS[4]),
        item_frame(ITEMS[11]),
        hold_frame(b"+", BEN, item=ITEMS[5]),
        checkin_frame(ITEMS[5]),
        checkin_frame(ITEMS[6]),
        dated_checkin(ITEMS[8], 10),
    ]
    replies = yield in_thread(as_account, policy_target, "gate", frames)
    reference, book, lost, _held, blocked, plain, dated = replies

    assert reference.startswith(b"180301")
    assert book.startswith(b"180303")
    # LOSER's loan of ITEMS[11] is marked lost: status 12, marker 00 by status.
    assert lost.startswith(b"181200")
    # 18: CF (allowed), AB and AJ (required); nothing else.
    assert [b"CF", b"AB", b"AJ"] == list(all_fields(book, FIXED_18))

    assert blocked.startswith(b"100NUY")
    assert b"99" == one(blocked, FIXED_10, b"CV")
    assert [
        b"This item is wanted for a reservation; please give it to staff."
    ] == all_fields(blocked, FIXED_10)[b"AF"]
    assert plain.startswith(b"101YUN")

    # This account may not date returns: the return is now, six days late.
    assert dated.startswith(b"101Y")
    assert 0 < overdue_fines(policy_target, BEN)
