"""Fixes from the fresh-user deployment trial of #5, each tested on a real server.

Servers run on loopback over a copy of the stock SQLite library (the
`metered` fixture); terminals are raw sockets speaking SIP2 bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from click.testing import CliRunner
from twisted.logger import formatEvent, globalLogPublisher

from ils.secrets import verify_secret
from sip2server.app import start_server
from sip2server.cli import check_config
from sip2server.config import ConfigError, parse_config
from sip2server.listeners import StartupError
from sip2server.protocol import (
    CheckinResponse,
    EndSessionResponse,
    FeePaidResponse,
    HoldResponse,
    ItemStatusUpdateResponse,
    LoginResponse,
    PatronStatus,
    PatronStatusResponse,
    RenewAllResponse,
)
from sip2server.reload import reload_server
from sip2server.server import _result_of
from sip2server.session import Reply
from sip2server.sortbins import parse_sort_bins
from tests.sip2server.conftest import ADA, ITEMS
from tests.sip2server.test_fees_wire import pay_frame
from tests.sip2server.test_mapping_checkin import FIXED_10, checkin_frame, one
from tests.sip2server.test_metrics import fetch, sample
from tests.sip2server.test_transports import (
    Launcher,
    make_tls_files,
    target,
    tls_terminal,
)
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    RawTerminal,
    client_hello,
    in_thread,
    sip_now,
)

NOW = dt.datetime(2026, 12, 4, 12, 0, 0)


# -- 1: a refusal is a refusal in the transaction log and the metrics ----------


@pytest_twisted.ensureDeferred
async def test_refused_payment_and_item_update_are_logged_and_counted_as_refused(
    metered: Launcher, tmp_path: Path
) -> None:
    """38N and 20N are "refused" in the transaction log and in sip2_messages."""
    journal = tmp_path / "transactions.jsonl"
    running = await metered.start(server={"transaction_log": str(journal)})
    update = b"19" + sip_now() + b"AOCITY|AB39999999999999|CHwet|\r"

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(target(running)) as terminal:
            terminal.login()
            # Ada owes nothing, and the item barcode is unknown.
            return terminal.exchange(pay_frame(ADA, b"1.00")), terminal.exchange(update)

    paid, updated = await in_thread(talk)
    address = running.operations_address()
    assert address is not None
    _, scrape = await in_thread(fetch, address, "/metrics")

    assert paid.startswith(b"38N")
    assert updated.startswith(b"200")  # item properties not stored
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [("fee_paid", "refused"), ("item_status_update", "refused")] == [
        (line["command"], line["outcome"]) for line in lines
    ]
    for command in ("fee_paid", "item_status_update"):
        counted = sample(
            scrape, "sip2_messages_total", command=command, result="refused"
        )
        assert counted == 1.0, command
        assert sample(scrape, "sip2_messages_total", command=command, result="ok") in (
            None,
            0.0,
        )


def _patron_status(**flags: Any) -> PatronStatusResponse:
    return PatronStatusResponse(
        patron_status=PatronStatus(),
        transaction_date=NOW,
        institution_id="CITY",
        patron_identifier="P1",
        personal_name="",
        **flags,
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            FeePaidResponse(
                payment_accepted=False,
                transaction_date=NOW,
                institution_id="CITY",
                patron_identifier="P1",
            ),
            "refused",
        ),
        (
            FeePaidResponse(
                payment_accepted=True,
                transaction_date=NOW,
                institution_id="CITY",
                patron_identifier="P1",
            ),
            "ok",
        ),
        (
            ItemStatusUpdateResponse(
                item_properties_ok=False, transaction_date=NOW, item_identifier="I1"
            ),
            "refused",
        ),
        (
            EndSessionResponse(
                end_session=False,
                transaction_date=NOW,
                institution_id="CITY",
                patron_identifier="P1",
            ),
            "refused",
        ),
        (
            HoldResponse(
                ok=False,
                available=False,
                transaction_date=NOW,
                institution_id="CITY",
                patron_identifier="P1",
            ),
            "refused",
        ),
        (
            CheckinResponse(
                ok=False,
                resensitize=False,
                alert=False,
                transaction_date=NOW,
                institution_id="CITY",
                item_identifier="I1",
                permanent_location="",
            ),
            "refused",
        ),
        (
            RenewAllResponse(
                ok=False,
                renewed_count=0,
                unrenewed_count=0,
                transaction_date=NOW,
                institution_id="CITY",
            ),
            "refused",
        ),
        (LoginResponse(ok=False), "refused"),
        (_patron_status(valid_patron=False), "refused"),
        (_patron_status(valid_patron=True, valid_patron_password=False), "refused"),
        (_patron_status(valid_patron=True, valid_patron_password=True), "ok"),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, str) else value,
)
def test_each_reply_has_its_own_outcome_rule(message: Any, expected: str) -> None:
    """Each reply type's own yes/no field (or patron validity) decides the outcome."""
    assert expected == _result_of(Reply(message))


# -- 2: a reload reaches terminals already logged in ---------------------------

GATE_LOGIN = b"9300CNgate1|COgate-secret|CPNORTH|\r"


def _sorting(bin_name: str) -> dict[str, Any]:
    return {"policy": {"sort_bin": [{"bin": bin_name}]}}


@pytest_twisted.ensureDeferred
async def test_reload_moves_a_connected_sorter_to_its_new_sort_bins(
    metered: Launcher,
) -> None:
    """A sorter logged in before the reload gets the new bin on its next checkin."""
    running = await metered.start(kiosk=_sorting("A"))
    terminal = RawTerminal(target(running))
    try:
        await in_thread(terminal.login)
        before = await in_thread(terminal.exchange, checkin_frame(ITEMS[0]))
        applied = await reload_server(
            running, _reactor(), lambda: metered.config(kiosk=_sorting("B"))
        )
        after = await in_thread(terminal.exchange, checkin_frame(ITEMS[1]))
    finally:
        terminal.close()

    assert applied
    assert b"A" == one(before, FIXED_10, b"CL")
    assert b"B" == one(after, FIXED_10, b"CL")


@pytest.mark.parametrize(
    ("gate", "why"),
    [
        (None, "removed"),
        ({"password": "new-gate-secret"}, "password changed"),
        ({"allowed_networks": ["192.0.2.0/24"]}, "allowed_networks"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_reload_closes_terminals_whose_login_no_longer_qualifies(
    metered: Launcher, gate: dict[str, Any] | None, why: str
) -> None:
    """A logged-in gate is closed when its account is removed, re-passworded or
    no longer allows its address; the kiosk beside it stays, and the log says why."""
    running = await metered.start()
    config = metered.config(gate=gate or {})
    if gate is None:
        config = config.model_copy(update={"accounts": config.accounts[:1]})
    kiosk = RawTerminal(target(running))
    gate_terminal = RawTerminal(target(running))
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        await in_thread(kiosk.login)
        assert b"941" == await in_thread(gate_terminal.exchange, GATE_LOGIN)
        applied = await reload_server(running, _reactor(), lambda: config)
        closed = await in_thread(gate_terminal.wait_for_close)
        status = await in_thread(kiosk.exchange, STATUS_FRAME)
    finally:
        globalLogPublisher.removeObserver(seen.append)
        kiosk.close()
        gate_terminal.close()

    assert applied
    assert closed
    assert status.startswith(b"98")
    closings = [
        formatEvent(event) for event in seen if "reload: closing" in formatEvent(event)
    ]
    assert len(closings) == 1, closings
    assert "login=gate1" in closings[0]
    assert why in closings[0]


def _reactor() -> Any:
    from twisted.internet import reactor  # noqa: PLC0415

    return reactor


# -- 5: allowlists never widen silently ---------------------------------------


def _account_document(**account: Any) -> dict[str, Any]:
    return {
        "database": {"url": "sqlite:///unused.sqlite3"},
        "accounts": [
            {
                "login": "kiosk1",
                "password": "p",
                "institution": "CITY",
                "location": "NORTH",
                **account,
            }
        ],
    }


@pytest.mark.parametrize(
    ("network", "problem"),
    [
        (
            "10.20.0.31/16",
            "'10.20.0.31/16' has host bits set: it would admit all of "
            "10.20.0.0/16; write 10.20.0.0/16 for the network or 10.20.0.31 "
            "for the one address",
        ),
        (
            "2001:db8::5/32",
            "'2001:db8::5/32' has host bits set: it would admit all of "
            "2001:db8::/32; write 2001:db8::/32 for the network or 2001:db8::5 "
            "for the one address",
        ),
    ],
)
def test_a_network_with_host_bits_is_refused_naming_the_key(
    network: str, problem: str
) -> None:
    """An allowlist entry with host bits set is an error at its key, not a wider net."""
    with pytest.raises(ConfigError) as raised:
        parse_config(
            _account_document(allowed_networks=["192.0.2.0/24", network]), "f.toml"
        )

    assert [("accounts[0].allowed_networks", problem)] == raised.value.problems


def test_a_single_address_admits_only_itself() -> None:
    """An address without a prefix is one host (/32 or /128), not a network."""
    config = parse_config(
        _account_document(allowed_networks=["10.20.0.31", "2001:db8::5"]), "f.toml"
    )
    account = config.accounts[0]

    assert account.allows_address("10.20.0.31")
    assert not account.allows_address("10.20.0.32")
    assert account.allows_address("2001:db8::5")
    assert not account.allows_address("2001:db8::6")


# -- 3: socket activation beside [server] listen -------------------------------


@pytest_twisted.ensureDeferred
async def test_a_port_already_taken_is_named_by_its_key_with_the_systemd_hint(
    metered: Launcher,
) -> None:
    """A [server] listen port that is taken stops the start naming server.listen[0];
    with a systemd: listener configured, the message says to leave listen out."""
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    document = {
        "server": {"listen": [f"tcp:{port}:interface=127.0.0.1"]},
        "listeners": [{"endpoint": "systemd:domain=INET:index=0"}],
        "database": {"url": metered.database_url},
        "accounts": _account_document()["accounts"],
    }
    try:
        with pytest.raises(StartupError) as raised:
            await start_server(parse_config(document, "<test>"), _reactor())
    finally:
        taken.close()

    message = str(raised.value)
    assert message.startswith(
        f"server.listen[0]: cannot listen on 'tcp:{port}:interface=127.0.0.1': "
        "Address already in use"
    )
    assert "leave [server] listen out" in message


def test_check_config_warns_of_listen_beside_a_systemd_listener(
    tmp_path: Path,
) -> None:
    """check-config --offline names server.listen when a systemd: listener is set."""
    config = tmp_path / "sip2server.toml"
    config.write_text(
        '[server]\nlisten = ["tcp:6001:interface=127.0.0.1"]\n\n'
        '[[listeners]]\nendpoint = "systemd:domain=INET6:name=sip2"\n\n'
        '[database]\nurl = "sqlite:///x.sqlite3"\n\n'
        '[[accounts]]\nlogin = "k"\npassword = "p"\ninstitution = "CITY"\n'
        'location = "NORTH"\n'
    )

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 0 == result.exit_code, result.output
    assert (
        f"warning: {config}: server.listen: with a systemd: listener the socket "
        "unit opens the SIP2 port; [server] listen opens "
        "tcp:6001:interface=127.0.0.1 as well"
    ) in result.output


# -- 4: the service starts at boot, not at the first terminal -------------------

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path",
    [
        "systemd/ils-sip2server.socket",
        "systemd/ils-sip2server.service",
        "docs/deployment.md",
    ],
)
def test_install_steps_enable_the_service_as_well_as_its_socket(path: str) -> None:
    """Every `systemctl enable` of the SIP2 units enables the service, so the
    metrics, health and PROXY ports are up after a boot without a terminal."""
    text = (ROOT / path).read_text()
    enables = [
        line
        for line in text.splitlines()
        if "systemctl enable" in line and "ils-sip2server" in line
    ]

    assert enables
    assert all("ils-sip2server.service" in line for line in enables), enables


def test_the_service_unit_is_wanted_at_boot() -> None:
    """The service's [Install] section makes `enable` start it at boot."""
    text = (ROOT / "systemd/ils-sip2server.service").read_text()
    install = text.split("[Install]", 1)[1]

    assert "WantedBy=multi-user.target" in install.splitlines()


# -- 6: silent configuration mistakes are named --------------------------------


def test_an_unknown_currency_is_refused_at_its_key() -> None:
    """currency = "XYZ" is an error at accounts[0].policy.currency, not a silent
    refusal of every payment."""
    with pytest.raises(ConfigError) as raised:
        parse_config(_account_document(policy={"currency": "XYZ"}), "f.toml")

    assert [
        (
            "accounts[0].policy.currency",
            "'XYZ' is not a currency the library system knows (an ISO 4217 code "
            "such as GBP, EUR, USD; see ils/currency.py)",
        )
    ] == raised.value.problems


@pytest.mark.parametrize(
    ("condition", "problem"),
    [
        ("hold = maybe", "hold is yes or no (or true or false), not 'maybe'"),
        ("transit ^= y", "transit is yes or no: compare it with = or !=, not ^="),
    ],
)
def test_a_yes_no_fact_takes_only_yes_or_no(condition: str, problem: str) -> None:
    """A yes/no sort-bin fact compared with another value is refused at its key."""
    rules = [{"bin": "1", "when": ["branch = NORTH", condition]}]
    with pytest.raises(ConfigError) as raised:
        parse_config(_account_document(policy={"sort_bin": rules}), "f.toml")

    assert [
        ("accounts[0].policy.sort_bin", f"sort_bin[0].when[1]: {problem}")
    ] == raised.value.problems


def test_true_and_false_mean_yes_and_no_for_yes_no_facts() -> None:
    """`hold = true` picks a trapped item and `hold = FALSE` one that is not."""
    rules = parse_sort_bins(
        [{"bin": "H", "when": ["hold = true"]}, {"bin": "N", "when": ["hold = FALSE"]}]
    )

    assert "H" == rules.bin_for({"hold": "yes"})
    assert "N" == rules.bin_for({"hold": "no"})


def test_numeric_comparisons_read_the_number_a_call_number_starts_with() -> None:
    """`call_number >= 800` matches "833.912 KAF" and neither "F KAF" nor "792 SMI"."""
    rules = parse_sort_bins([{"bin": "8", "when": ["call_number >= 800"]}])

    assert "8" == rules.bin_for({"call_number": "833.912 KAF"})
    assert "8" == rules.bin_for({"call_number": "800"})
    assert rules.bin_for({"call_number": "F KAF"}) is None
    assert rules.bin_for({"call_number": "792 SMI"}) is None


def test_check_config_names_codes_and_institutions_the_database_lacks(
    library_file: Path, tmp_path: Path
) -> None:
    """With the database, check-config exits 1 naming a blocked item type, an
    in-house patron category and an [institution.X] table the library lacks."""
    config = tmp_path / "sip2server.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{library_file}"\n\n'
        '[institution.TOWN]\nterminator = "cr"\n\n'
        '[[accounts]]\nlogin = "k"\npassword = "p"\ninstitution = "CITY"\n'
        'location = "NORTH"\n'
        "[accounts.policy]\n"
        'blocked_item_types = ["REF", "DVDX"]\n'
        'inhouse_patron_categories = ["VISITORX"]\n'
    )

    result = CliRunner().invoke(check_config, [str(config)])

    assert 1 == result.exit_code, result.output
    assert f"{config}: institution: 'TOWN' is not an institution in the database" in (
        result.output
    )
    assert (
        f"{config}: accounts[0] (k).policy.blocked_item_types: 'DVDX' is not an "
        "item type in the database"
    ) in result.output
    assert "'REF' is not" not in result.output
    assert (
        f"{config}: accounts[0] (k).policy.inhouse_patron_categories: 'VISITORX' "
        "is not a patron category in the database"
    ) in result.output


# -- 7: log lines that say what happened ---------------------------------------


class _Seen:
    """Collects the log events written while it is open, as formatted text."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> _Seen:
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    def lines(self, containing: str) -> list[tuple[str, str]]:
        """(level, text) of each event whose text contains `containing`."""
        found = []
        for event in self.events:
            text = formatEvent(event)
            if containing in text:
                found.append((event["log_level"].name, text))
        return found


@pytest_twisted.ensureDeferred
async def test_a_login_the_listener_does_not_admit_is_logged_as_such(
    metered: Launcher,
) -> None:
    """kiosk1's right password on a gate-only listener: 940, logged as "not
    admitted on this listener", not as a wrong password."""
    running = await metered.start(
        listeners=[{"endpoint": "tcp:0:interface=127.0.0.1", "accounts": ["gate1"]}]
    )

    def login() -> bytes:
        with RawTerminal(target(running)) as terminal:
            return terminal.exchange(LOGIN_FRAME)

    with _Seen() as seen:
        answer = await in_thread(login)

    assert b"940" == answer
    refusals = seen.lines("login refused")
    assert len(refusals) == 1, refusals
    level, text = refusals[0]
    assert "warn" == level
    assert text.endswith(
        "login=kiosk1: account not admitted on this listener (see its accounts list)"
    )


@pytest_twisted.ensureDeferred
async def test_a_failed_client_certificate_handshake_logs_the_tls_error(
    metered: Launcher, tmp_path: Path
) -> None:
    """A terminal without a certificate on a client_ca listener: a WARN line with
    OpenSSL's reason."""
    files = make_tls_files(tmp_path)
    running = await metered.start(listeners=[files.listener(client_ca=True)])

    def without_certificate() -> None:
        with (
            contextlib.suppress(ssl.SSLError, OSError),
            tls_terminal(target(running), files) as terminal,
        ):
            terminal.exchange(LOGIN_FRAME)

    with _Seen() as seen:
        await in_thread(without_certificate)
        await _until(lambda: seen.lines("TLS failed"))

    level, text = seen.lines("TLS failed")[0]
    assert "warn" == level
    assert text.endswith("login=-: peer did not return a certificate")


@pytest_twisted.ensureDeferred
async def test_a_connection_without_proxy_header_is_a_warning_with_the_reason(
    metered: Launcher,
) -> None:
    """Plain SIP2 on a PROXY listener: closed, and one WARN line saying why."""
    running = await metered.start(
        listeners=[{"endpoint": "haproxy:tcp:0:interface=127.0.0.1"}]
    )

    def talk() -> bool:
        with RawTerminal(target(running)) as terminal:
            terminal.send(STATUS_FRAME)
            return terminal.wait_for_close()

    with _Seen() as seen:
        closed = await in_thread(talk)
        await _until(lambda: seen.lines("no PROXY header"))

    assert closed
    lines = seen.lines("no PROXY header")
    assert [level for level, _ in lines] == ["warn"]
    assert "listener listeners[0]" in lines[0][1]
    assert not seen.lines("terminal disconnected")


@pytest_twisted.ensureDeferred
async def test_a_tls_handshake_on_a_plain_port_counts_as_a_protocol_error(
    metered: Launcher,
) -> None:
    """A ClientHello on the plain port adds one to sip2_protocol_errors_total."""
    running = await metered.start()

    def talk() -> bool:
        with RawTerminal(target(running)) as terminal:
            terminal.send(client_hello())
            return terminal.wait_for_close()

    closed = await in_thread(talk)
    address = running.operations_address()
    assert address is not None
    _, scrape = await in_thread(fetch, address, "/metrics")

    assert closed
    assert 1.0 == sample(scrape, "sip2_protocol_errors_total")


async def _until(condition: Any, seconds: float = 15.0) -> None:
    """Let the reactor run until `condition()` is true (events, not a fixed sleep)."""
    from twisted.internet import task  # noqa: PLC0415

    reactor = _reactor()
    deadline = reactor.seconds() + seconds
    while not condition() and reactor.seconds() < deadline:
        await task.deferLater(reactor, 0.01, lambda: None)


# -- 8: a reload names only the accounts that changed --------------------------


@pytest_twisted.ensureDeferred
async def test_reload_names_only_the_accounts_that_changed(metered: Launcher) -> None:
    """Reloading the same file notes no account; changing the gate notes only it."""
    policy = {"policy": {"sort_bin": [{"bin": "A"}], "item_fields": {"XI": "x"}}}
    running = await metered.start(kiosk=policy)

    with _Seen() as seen:
        same = await reload_server(
            running, _reactor(), lambda: metered.config(kiosk=policy)
        )
        unchanged = seen.lines("reload: account")
    with _Seen() as seen:
        changed = await reload_server(
            running,
            _reactor(),
            lambda: metered.config(kiosk=policy, gate={"terminator": "cr"}),
        )
        notes = seen.lines("reload: account")

    assert same
    assert changed
    assert [] == unchanged
    assert ["reload: account 'gate1' changed"] == [text for _, text in notes]


# -- 10: defaults and small mistakes -------------------------------------------


@pytest_twisted.ensureDeferred
async def test_an_account_named_by_one_listener_is_kept_off_the_others(
    metered: Launcher,
) -> None:
    """kiosk1, named by the second listener, is refused on the first (which names
    none); gate1, named by none, still logs in there."""
    running = await metered.start(
        listeners=[
            {"endpoint": "tcp:0:interface=127.0.0.1"},
            {"endpoint": "tcp:0:interface=127.0.0.1", "accounts": ["kiosk1"]},
        ]
    )

    def login(index: int, frame: bytes) -> bytes:
        with RawTerminal(target(running, index)) as terminal:
            return terminal.exchange(frame)

    plain_kiosk = await in_thread(login, 0, LOGIN_FRAME)
    plain_gate = await in_thread(login, 0, GATE_LOGIN)
    own_kiosk = await in_thread(login, 1, LOGIN_FRAME)

    assert (b"940", b"941", b"941") == (plain_kiosk, plain_gate, own_kiosk)


def test_listen_may_be_one_string() -> None:
    """listen = "tcp:6001" is the one endpoint, as ["tcp:6001"] is."""
    document = _account_document()
    document["server"] = {"listen": "tcp:6001:interface=127.0.0.1"}

    config = parse_config(document, "f.toml")

    assert ["tcp:6001:interface=127.0.0.1"] == config.server.listen


def test_a_mistake_in_an_institution_policy_is_named_by_the_institution_table() -> None:
    """A bad key in [institution.CITY.policy] is reported there, once, not under
    each account that inherits it."""
    document = _account_document()
    document["institution"] = {"CITY": {"policy": {"currency": "XYZ"}}}
    document["accounts"].append({**document["accounts"][0], "login": "kiosk2"})

    with pytest.raises(ConfigError) as raised:
        parse_config(document, "f.toml")

    assert [key for key, _ in raised.value.problems] == [
        "institution.CITY.policy.currency"
    ]


def test_check_config_offline_names_a_missing_tls_key(tmp_path: Path) -> None:
    """--offline still checks that a listener's TLS files exist, naming the key."""
    files = make_tls_files(tmp_path)
    missing = tmp_path / "absent.key"
    config = tmp_path / "tls.toml"
    config.write_text(
        '[[listeners]]\nendpoint = "tcp:0:interface=127.0.0.1"\n'
        f'[listeners.tls]\ncertificate = "{files.server_certificate}"\n'
        f'private_key = "{missing}"\n\n'
        '[database]\nurl = "sqlite:///x.sqlite3"\n\n'
        '[[accounts]]\nlogin = "k"\npassword = "p"\ninstitution = "CITY"\n'
        'location = "NORTH"\n'
    )

    result = CliRunner().invoke(check_config, ["--offline", str(config)])

    assert 1 == result.exit_code
    assert f"{config}: listeners[0].tls.private_key: no such file {missing}" in (
        result.output
    )


def test_hash_password_hashes_one_line_piped_in() -> None:
    """`echo secret | ils hash-password` prints a hash of "secret"."""
    result = subprocess.run(
        [sys.executable, "-m", "ils.cli", "hash-password"],
        input="kiosk-secret\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert 0 == result.returncode, result.stderr
    printed = result.stdout.strip()
    assert verify_secret("kiosk-secret", printed)
    assert not verify_secret("kiosk-secret\n", printed)


# -- 11: the Debian install steps make what the units use ----------------------


def _install_steps() -> list[str]:
    header = (ROOT / "systemd/ils-sip2server.service").read_text().split("[Unit]")[0]
    return [line.removeprefix("#").strip() for line in header.splitlines()]


def test_install_steps_make_the_folders_the_service_uses_before_using_them() -> None:
    """python3-venv is installed, and /var/lib/ils, /etc/ils/tls and the
    Documentation= folder are made, before the steps that need them."""
    steps = _install_steps()
    text = (ROOT / "systemd/ils-sip2server.service").read_text()
    documentation = re.search(r"^Documentation=file://(\S+)$", text, re.MULTILINE)
    assert documentation is not None
    docs_folder = str(Path(documentation.group(1)).parent)

    def first(fragment: str) -> int:
        return next(n for n, step in enumerate(steps) if fragment in step)

    assert first("apt-get install python3-venv") < first("python3 -m venv")
    assert first("install -d -o ils -g ils -m 0750 /var/lib/ils") < first("ils init")
    assert first(f"install -d -m 0755 {docs_folder}") <= first(
        f"cp docs/*.md {docs_folder}/"
    )
    assert first("/etc/ils/tls") > first("install -d -o root -g ils -m 0750 /etc/ils")


def test_deployment_guide_has_the_same_install_steps() -> None:
    """deployment.md's install block makes /var/lib/ils, /etc/ils/tls and the docs."""
    guide = (ROOT / "docs/deployment.md").read_text()

    for step in (
        "apt-get install python3-venv",
        "install -d -o ils -g ils -m 0750 /var/lib/ils",
        "install -d -m 0755 /opt/ils/docs && cp docs/*.md /opt/ils/docs/",
        "install -d -o root -g ils -m 0750 /etc/ils /etc/ils/tls",
    ):
        assert step in guide, step
