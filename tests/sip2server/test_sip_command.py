"""`ils sip` against a real server on loopback: renew, renew-all, hold, pay,
block, enable, raw frames with and without checksums, masked wire output, TLS.

The server runs in the test's reactor on a SQLite copy of the stock library;
the command, which blocks, runs in a thread through click's test runner.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_twisted
from click.testing import CliRunner, Result

from ils.circulation import Circulation
from ils.fees import FeeService
from ils.models import FeeKind
from sip2server.client import SipClient, SipClientError
from sip2server.config import parse_config
from sip2server.protocol import ScStatusRequest
from sip2server.sip_command import sip
from tests.sip2server.certificates import make_tls_files
from tests.sip2server.conftest import (
    ADA,
    BEN,
    INSTITUTION,
    ITEMS,
    LOCATION,
    LOGIN,
    PASSWORD,
    PIN,
    SipTarget,
    stock_server,
)
from tests.sip2server.test_wire_behaviour import in_thread


@pytest_twisted.async_yield_fixture
async def sqlite_target(sqlite_url: str) -> AsyncIterator[SipTarget]:
    """A running server with the stock library on a SQLite file."""
    async with stock_server(sqlite_url) as running:
        yield running


def terminal_options(target: SipTarget) -> list[str]:
    """The options that point `ils sip` at the test server's kiosk account."""
    return [
        "--host",
        target.host,
        "--port",
        str(target.port),
        "--login",
        LOGIN,
        "--password",
        PASSWORD,
        "--institution",
        INSTITUTION,
        "--location",
        LOCATION,
    ]


def ils_sip(*args: str) -> Result:
    """`ils sip ARGS...` as typed, its output collected."""
    return CliRunner().invoke(sip, list(args), catch_exceptions=False)


def lend_ten_days_ago(target: SipTarget, patron: str, *items: str) -> None:
    """Loans made ten days ago, so that renewing gives a later due date."""
    circulation = Circulation(target.library.database)
    ago = datetime.now(UTC) - timedelta(days=10)
    for barcode in items:
        circulation.checkout(patron, barcode, branch_code=LOCATION, at=ago)


@pytest_twisted.inlineCallbacks
def test_renew_then_renew_all_show_what_was_renewed(sqlite_target: SipTarget) -> Any:
    """`renew` renews one loan (30 ok, renewal Y, a due date); `renew-all` then
    renews the other loan and lists the first, at its one-renewal limit, as not
    renewed."""
    lend_ten_days_ago(sqlite_target, ADA, ITEMS[0], ITEMS[1])
    options = terminal_options(sqlite_target)

    renewed = yield in_thread(ils_sip, *options, "renew", ADA, ITEMS[0], "--pin", PIN)
    everything = yield in_thread(ils_sip, *options, "renew-all", ADA, "--pin", PIN)

    assert 0 == renewed.exit_code, renewed.output
    assert "RenewResponse (30)\n  ok: yes\n  renewal_ok: yes\n" in renewed.output
    assert f"  AB item_identifier: {ITEMS[0]}\n" in renewed.output
    assert re.search(r"  AH due_date: \d{8}", renewed.output)
    assert 0 == everything.exit_code, everything.output
    assert "RenewAllResponse (66)\n  ok: yes\n" in everything.output
    assert "  renewed_count: 1\n  unrenewed_count: 1\n" in everything.output
    assert f"  BM renewed_items: {ITEMS[1]}\n" in everything.output
    assert f"  BN unrenewed_items: {ITEMS[0]}\n" in everything.output


@pytest_twisted.inlineCallbacks
def test_hold_place_then_cancel(sqlite_target: SipTarget) -> Any:
    """`hold place` puts the patron first in the queue at the pickup branch;
    `hold cancel` removes it, so a second cancel finds no hold."""
    options = terminal_options(sqlite_target)

    placed = yield in_thread(
        ils_sip, *options, "hold", "place", BEN, ITEMS[4], "--pin", PIN,
        "--pickup", LOCATION,
    )  # fmt: skip
    cancelled = yield in_thread(
        ils_sip, *options, "hold", "cancel", BEN, ITEMS[4], "--pin", PIN
    )
    again = yield in_thread(
        ils_sip, *options, "hold", "cancel", BEN, ITEMS[4], "--pin", PIN
    )

    assert "HoldResponse (16)\n  ok: yes\n" in placed.output
    assert "  BR queue_position: 1\n" in placed.output
    assert f"  BS pickup_location: {LOCATION}\n" in placed.output
    assert "HoldResponse (16)\n  ok: yes\n" in cancelled.output
    assert "HoldResponse (16)\n  ok: no\n" in again.output


@pytest_twisted.inlineCallbacks
def test_pay_a_given_fee_by_id(sqlite_target: SipTarget) -> Any:
    """`pay --fee-id` pays that fee (38 accepted, BK echoed, 2.50 still owed of
    3.50); another currency than the library's is refused."""
    fees = FeeService(sqlite_target.library.database)
    fees.charge(
        ADA, kind=FeeKind.DAMAGE, amount_minor=250, description="torn", by="desk"
    )
    card = fees.charge(
        ADA, kind=FeeKind.MANUAL, amount_minor=100, description="card", by="desk"
    )
    options = terminal_options(sqlite_target)

    paid = yield in_thread(
        ils_sip, *options, "pay", ADA, "--pin", PIN, "--amount", "1.00",
        "--fee-id", str(card.id), "--currency", "GBP", "--type", "other",
        "--transaction-id", "till-4",
    )  # fmt: skip
    dollars = yield in_thread(
        ils_sip, *options, "pay", ADA, "--pin", PIN, "--amount", "2.50",
        "--currency", "USD",
    )  # fmt: skip

    assert 0 == paid.exit_code, paid.output
    assert "FeePaidResponse (38)\n  payment_accepted: yes\n" in paid.output
    assert "  BK transaction_id: till-4\n" in paid.output
    assert "Paid 1.00 GBP; 2.50 GBP still owed." in paid.output
    assert "FeePaidResponse (38)\n  payment_accepted: no\n" in dollars.output


@pytest_twisted.inlineCallbacks
def test_block_then_enable_a_card(sqlite_target: SipTarget) -> Any:
    """`block` answers with a 24 whose status denies charging; `enable` lifts
    the terminal's block (26 with no status flag set)."""
    options = terminal_options(sqlite_target)

    blocked = yield in_thread(ils_sip, *options, "block", BEN, "--message", "kept")
    enabled = yield in_thread(ils_sip, *options, "enable", BEN, "--pin", PIN)

    assert "PatronStatusResponse (24)\n  patron_status: charge_privileges_denied" in (
        blocked.output
    )
    assert "PatronEnableResponse (26)\n  patron_status: (none set)\n" in (
        enabled.output
    )


@pytest_twisted.inlineCallbacks
def test_show_wire_masks_the_password_and_the_pin(sqlite_target: SipTarget) -> Any:
    """--show-wire prints the frames sent with CO and AD as ***, never in clear."""
    options = terminal_options(sqlite_target)

    result = yield in_thread(
        ils_sip, *options, "--show-wire", "patron", ADA, "--pin", PIN, "--brief"
    )

    assert f"  sent: 9300CN{LOGIN}|CO***|CP{LOCATION}|AY0AZ" in result.output
    assert f"|AA{ADA}|AC|AD***|AY1AZ" in result.output
    assert PASSWORD not in result.output
    assert f"AD{PIN}" not in result.output


@pytest_twisted.inlineCallbacks
def test_raw_frames_with_and_without_checksums(sqlite_target: SipTarget) -> Any:
    """`raw --checksum` adds a right AZ (98 comes back); a wrong AZ typed by hand
    gets 96; --no-checksums sends frames without AY/AZ."""
    options = terminal_options(sqlite_target)

    good = yield in_thread(ils_sip, *options, "raw", "9900302.00", "--checksum")
    bad = yield in_thread(ils_sip, *options, "raw", "9900302.00AY1AZ0000")
    plain = yield in_thread(
        ils_sip, *options, "--no-checksums", "--show-wire", "status"
    )

    assert "AcsStatusResponse (98)\n  online_status: yes\n" in good.output
    assert "RequestScResend (96)\n" in bad.output
    assert "  sent: 9300CNkiosk1|CO***|CPNORTH|\n" in plain.output
    assert "  sent: 9900802.00\n" in plain.output


def test_checksum_of_a_raw_frame_is_the_spec_sum() -> None:
    """The AZ appended to a raw frame is the two's complement of its byte sum."""
    from sip2server.sip_terminal import with_checksum  # noqa: PLC0415

    # "9900302.00AY0AZ": 9 9 (0x72), six 0s (0x120), 3 (0x33), 2 (0x32), . (0x2E),
    # A Y A Z (0x135): 0x35A in all; 0x10000 - 0x35A = 0xFCA6.
    assert "9900302.00AY0AZFCA6" == with_checksum("9900302.00", 0)


@pytest_twisted.inlineCallbacks
def test_tls_with_a_client_certificate(launcher_tls: tuple[SipTarget, Any]) -> Any:
    """Over a TLS listener that wants terminal certificates, `--tls --ca --cert
    --key` logs in and gets 98 (also checking the name given by --server-name);
    without --ca, or with a name the certificate lacks, the command says TLS
    failed."""
    target, files = launcher_tls
    options = terminal_options(target)
    tls = ["--tls", "--ca", str(files.ca)]
    certificate = ["--cert", str(files.terminal_certificate)]
    key = ["--key", str(files.terminal_key)]

    served = yield in_thread(ils_sip, *options, *tls, *certificate, *key, "status")
    untrusted = yield in_thread(ils_sip, *options, "--tls", "status")
    by_name = yield in_thread(
        ils_sip, *options, *tls, *certificate, *key, "--server-name", "localhost",
        "status",
    )  # fmt: skip
    wrong_name = yield in_thread(
        ils_sip, *options, *tls, *certificate, *key, "--server-name",
        "sip.example.org", "status",
    )  # fmt: skip

    assert 0 == served.exit_code, served.output
    assert "LoginResponse (94)\n  ok: yes\n" in served.output
    assert "AcsStatusResponse (98)\n  online_status: yes\n" in served.output
    assert 1 == untrusted.exit_code
    assert f"TLS with {target.host}:{target.port} failed" in untrusted.output
    # The certificate names localhost and 127.0.0.1, not sip.example.org.
    assert "AcsStatusResponse (98)\n" in by_name.output
    assert 1 == wrong_name.exit_code
    assert "sip.example.org" in wrong_name.output


@pytest_twisted.inlineCallbacks
def test_sip_client_speaks_tls_with_a_context(
    launcher_tls: tuple[SipTarget, Any],
) -> Any:
    """SipClient with `tls` verifies the server and exchanges frames over TLS;
    the same port spoken to in plain text gives no reply."""
    target, files = launcher_tls
    context = ssl.create_default_context(cafile=str(files.ca))
    context.load_cert_chain(files.terminal_certificate, files.terminal_key)

    def talk(tls: ssl.SSLContext | None) -> str:
        client = SipClient(target.host, target.port, tls=tls, timeout=5, deadline=5)
        try:
            with client:
                return client.request(
                    ScStatusRequest(max_print_width=80)
                ).message.command
        except SipClientError as error:
            return f"error: {error}"

    over_tls = yield in_thread(talk, context)
    plain = yield in_thread(talk, None)

    assert "98" == over_tls
    assert plain.startswith("error: ")


@pytest_twisted.async_yield_fixture
async def launcher_tls(
    sqlite_url: str, tmp_path: Path
) -> AsyncIterator[tuple[SipTarget, Any]]:
    """A server with one TLS listener that asks terminals for a certificate."""
    files = make_tls_files(tmp_path)
    config = parse_config(
        {
            "server": {"threads": 4},
            "database": {"url": sqlite_url},
            "listeners": [files.listener(client_ca=True)],
            "accounts": [
                {
                    "login": LOGIN,
                    "password": PASSWORD,
                    "institution": INSTITUTION,
                    "location": LOCATION,
                }
            ],
        },
        "<test>",
    )
    async with stock_server(sqlite_url, config) as running:
        yield running, files
