"""`ils sip conform`: the shipped plan against our server, failures with their
reasons, servers that hang up or never answer, and plans with mistakes.

Servers are real: `ils serve` over `ils demo` in a subprocess, the test
library's server in the test's reactor, and small misbehaving SIP2 servers on
loopback ports. The command runs in a thread through click's test runner, or
as its own process where the whole command line is the point.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from click.testing import CliRunner, Result
from twisted.internet import protocol

from ils.fees import FeeService
from ils.models import FeeKind
from sip2server.conformance import judge
from sip2server.conformance_plan import PlanError, load_plan
from sip2server.sip_command import sip
from tests.conftest import REPO_ROOT
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
)
from tests.sip2server.test_sip_command import sqlite_target  # noqa: F401
from tests.sip2server.test_wire_behaviour import in_thread

SHIPPED_PLAN = REPO_ROOT / "config" / "conformance-plan.toml"
ILS = [sys.executable, "-m", "ils.cli"]
LISTENING = re.compile(r"SIP2 server listening on 127\.0\.0\.1:(\d+)")


def conform(port: int, plan: Path, *args: str, options: tuple[str, ...] = ()) -> Result:
    """`ils sip --port PORT OPTIONS... conform --plan PLAN ARGS...`, output
    collected."""
    command = ["--port", str(port), *options, "conform", "--plan", str(plan), *args]
    return CliRunner().invoke(sip, command, catch_exceptions=False)


def write_plan(folder: Path, text: str) -> Path:
    """A plan file with this (dedented) text."""
    path = folder / "plan.toml"
    path.write_text(textwrap.dedent(text))
    return path


# --- the shipped plan against our own server -----------------------------------


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[int]:
    """`ils serve` with the shipped configuration over `ils demo` on SQLite."""
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    built = subprocess.run(
        [*ILS, "demo", "--db", url, "--patrons", "5"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert 0 == built.returncode, built.stderr
    server = subprocess.Popen(
        [
            *ILS, "serve", "--config", str(REPO_ROOT / "config" / "sip2server.toml"),
            "--db", url, "--listen", "tcp:0:interface=127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert server.stdout is not None
    port = None
    deadline = time.monotonic() + 60
    while port is None and time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        match = LISTENING.search(line)
        port = int(match.group(1)) if match else None
    try:
        if port is None:
            pytest.fail("`ils serve` did not start")
        yield port
    finally:
        server.kill()
        server.communicate()


def test_shipped_plan_passes_against_ils_serve_over_ils_demo(demo_server: int) -> None:
    """The shipped plan, with its demo defaults, passes every step; exit 0."""
    result = subprocess.run(
        [
            *ILS,
            "sip",
            "--port",
            str(demo_server),
            "conform",
            "--plan",
            str(SHIPPED_PLAN),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )

    assert 0 == result.returncode, result.stdout + result.stderr
    assert "PASS   1 login (93 -> 94)\n" in result.stdout
    assert "PASS   8 renew the item the patron's loans listed (29 -> 30)\n" in (
        result.stdout
    )
    # The demo's first item on loan is the one checked out; Bob's first fee is 1.
    assert "         captured loaned = '31234000000016'\n" in result.stdout
    assert "         captured hold_title = 'Moby-Dick, or, The whale'\n" in (
        result.stdout
    )
    assert "         captured fee_id = '1'\n" in result.stdout
    assert "PASS  16 a bad checksum is answered with 96 (99 -> 96)\n" in result.stdout
    assert "PASS  17 an unknown message is answered with 96 (XX -> 96)\n" in (
        result.stdout
    )
    assert result.stdout.endswith("18 steps: 18 passed, 0 failed, 0 skipped\n")
    assert "kiosk1-demo" not in result.stdout


@pytest_twisted.inlineCallbacks
def test_shipped_plan_passes_on_another_library_given_its_variables(
    sip_target: SipTarget,
) -> Any:
    """With --login, --password, --institution, --location and --var for the
    patrons, items and currency, the shipped plan passes on the test library
    (both engines), paying a cent of the fee whose id the 64 listed."""
    owed = FeeService(sip_target.library.database).charge(
        BEN, kind=FeeKind.DAMAGE, amount_minor=250, description="torn", by="desk"
    )
    args = [
        "--port", str(sip_target.port), "--login", LOGIN, "--password", PASSWORD,
        "--institution", INSTITUTION, "--location", LOCATION,
        "conform", "--plan", str(SHIPPED_PLAN), "--report", "json",
        "--var", f"patron={ADA}", "--var", f"item={ITEMS[5]}", "--var", f"pin={PIN}",
        "--var", f"hold_item={ITEMS[6]}", "--var", f"fee_patron={BEN}",
        "--var", "currency=GBP",
    ]  # fmt: skip

    result = yield in_thread(CliRunner().invoke, sip, args)
    report = json.loads(result.output)

    assert 0 == result.exit_code, result.output
    assert {"steps": 18, "passed": 18, "failed": 0, "skipped": 0} == report["totals"]
    assert report["passed"] is True
    assert report["steps"][0]["sent"].startswith(f"9300CN{LOGIN}|CO***|CPNORTH|AY0AZ")
    assert {"fee_id": str(owed.id)} == report["steps"][12]["captured"]
    assert f"|CG{owed.id}|" in report["steps"][13]["sent"]
    assert {"loaned": ITEMS[5]} == report["steps"][5]["captured"]
    assert PASSWORD not in result.output


# --- failures and their reasons ---------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_wrong_expectations_fail_with_precise_reasons(
    sqlite_target: SipTarget,  # noqa: F811
    tmp_path: Path,
) -> Any:
    """A step expecting the wrong protocol version, institution and AF fails with
    each reason and both frames; the others pass; exit status 1."""
    plan = write_plan(
        tmp_path,
        f"""
        [variables]
        login = "{LOGIN}"
        password = "{PASSWORD}"
        institution = "{INSTITUTION}"

        [[steps]]
        name = "login"
        send = "login"
        fields = {{ CN = "${{login}}", CO = "${{password}}" }}
        expect = {{ ok = true }}

        [[steps]]
        name = "status says too much"
        send = "sc_status"
        [steps.expect]
        fixed = {{ protocol_version = "1.00" }}
        equal = {{ AO = "TOWN" }}
        absent = ["AM"]
        match = {{ BX = "^N" }}

        [[steps]]
        name = "unknown patron"
        send = "patron_status"
        fields = {{ AA = "29999999999999", AD = "0000" }}
        expect = {{ equal = {{ BL = "N" }} }}
        """,
    )

    result = yield in_thread(conform, sqlite_target.port, plan)

    assert 1 == result.exit_code
    lines = result.output.splitlines()
    assert "PASS   1 login (93 -> 94)" == lines[1]
    assert "FAIL   2 status says too much (99 -> 98)" == lines[2]
    assert "         fixed protocol_version: expected '1.00', got '2.00'" == lines[3]
    assert "         AM: expected absent, got 'City Libraries'" == lines[4]
    assert "         AO: expected 'TOWN', got 'CITY'" == lines[5]
    assert "         BX: expected to match '^N', got 'YYYYYYYYYYYYYYYY'" == lines[6]
    assert lines[7].startswith("         sent:     9900802.00AY1AZ")
    assert lines[8].startswith("         received: 98Y")
    assert "PASS   3 unknown patron (23 -> 24)" == lines[9]
    assert "3 steps: 2 passed, 1 failed, 0 skipped" == lines[10]


# --- servers that hang up or never answer ------------------------------------------


class MisbehavingServer(protocol.Protocol):
    """A SIP2 server that accepts any login (941) and, for a 99, hangs up or says
    nothing, as `factory.status` says; a 23 gets a fixed 24."""

    def dataReceived(self, data: bytes) -> None:
        """Answer each frame in `data` by its command code."""
        for frame in data.split(b"\r"):
            if frame.startswith(b"93"):
                self.transport.write(b"941\r")
            elif frame.startswith(b"23"):
                self.transport.write(
                    b"24              00020261204    120000AOCITY|AA1|AEX|BLY|\r"
                )
            elif frame.startswith(b"99") and self.factory.status == "hang up":
                self.transport.loseConnection()


@pytest_twisted.async_yield_fixture(params=["hang up", "silence"])
async def misbehaving(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[int, str]]:
    """The port of a `MisbehavingServer` that hangs up on, or ignores, a 99,
    and which of the two it does."""
    from twisted.internet import reactor  # noqa: PLC0415

    factory = protocol.Factory.forProtocol(MisbehavingServer)
    factory.status = request.param  # type: ignore[attr-defined]
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    try:
        yield listening.getHost().port, request.param
    finally:
        await listening.stopListening()


_HANG_UP_PLAN = """
    [plan]
    timeout = 0.3

    [[steps]]
    name = "login"
    send = "login"
    fields = { CN = "any", CO = "secret" }

    [[steps]]
    name = "status"
    send = "sc_status"
    on_failure = "ON_FAILURE"

    [[steps]]
    name = "patron status on a new connection"
    send = "patron_status"
    fields = { AO = "CITY", AA = "1" }
    expect = { ok = true }
    """


@pytest_twisted.inlineCallbacks
def test_a_server_that_hangs_up_or_never_answers_fails_that_step_and_carries_on(
    misbehaving: tuple[int, str], tmp_path: Path
) -> Any:
    """The 99 step fails with the reason (connection closed, or no reply within
    0.3 s), and the next step is served on a new connection; exit status 1."""
    port, behaviour = misbehaving
    plan = write_plan(tmp_path, _HANG_UP_PLAN.replace("ON_FAILURE", "continue"))
    reason = {
        "hang up": "the server closed the connection",
        "silence": f"no complete reply within 0.3 s from 127.0.0.1:{port}",
    }[behaviour]

    result = yield in_thread(lambda: conform(port, plan, options=("--no-checksums",)))

    lines = result.output.splitlines()
    assert 1 == result.exit_code
    assert "PASS   1 login (93 -> 94)" == lines[1]
    assert "FAIL   2 status (99 -> 98)" == lines[2]
    assert f"         {reason}" == lines[3]
    assert "         sent:     9900802.00" == lines[4]
    assert "PASS   3 patron status on a new connection (23 -> 24)" == lines[5]
    assert "3 steps: 2 passed, 1 failed, 0 skipped" == lines[6]


@pytest_twisted.inlineCallbacks
def test_a_step_marked_stop_skips_the_rest(
    misbehaving: tuple[int, str], tmp_path: Path
) -> Any:
    """With on_failure = "stop", the steps after the failed one are skipped."""
    plan = write_plan(tmp_path, _HANG_UP_PLAN.replace("ON_FAILURE", "stop"))

    result = yield in_thread(
        lambda: conform(
            misbehaving[0], plan, "--report", "json", options=("--no-checksums",)
        )
    )
    report = json.loads(result.output)

    assert 1 == result.exit_code
    assert ["pass", "fail", "skipped"] == [s["outcome"] for s in report["steps"]]
    assert ["not run: step 2 failed"] == report["steps"][2]["reasons"]
    assert "CO***" in report["steps"][0]["sent"]
    assert {"steps": 3, "passed": 1, "failed": 1, "skipped": 1} == report["totals"]


# --- plans with mistakes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (
            '[[steps]]\nsend = "login"\ncolour = "red"\n',
            "steps[1] (step 1).colour: unknown key",
        ),
        (
            '[[steps]]\nname = "go"\nsend = "checkout_now"\n',
            "steps[1] (go).send: unknown message 'checkout_now'",
        ),
        (
            '[[steps]]\nname = "out"\nsend = "checkout"\nfields = { ZZ = "1" }\n',
            "steps[1] (out).fields.ZZ: a checkout message has no such field",
        ),
        (
            '[[steps]]\nname = "p"\nsend = "patron_status"\n'
            'fields = { AA = "${who}" }\n',
            "steps[1] (p).fields.AA: variable ${who} is not set",
        ),
        (
            '[[steps]]\nname = "h"\nsend = "hold"\nfields = { hold_mode = "?" }\n',
            "steps[1] (h).fields.hold_mode: '?' cannot be sent here",
        ),
        (
            '[[steps]]\nname = "s"\nsend = "sc_status"\n'
            '[steps.expect]\nmatch = { AO = "(" }\n',
            "steps[1] (s).expect.match.AO: not a regular expression",
        ),
        (
            '[[steps]]\nname = "s"\nsend = "sc_status"\n'
            '[steps.expect]\nfixed = { circulation_status = "03" }\n',
            "steps[1] (s).expect.fixed.circulation_status: a 98 reply has no such",
        ),
        (
            '[[steps]]\nname = "s"\nsend = "sc_status"\nraw = "99"\n',
            "steps[1] (s): give exactly one of 'send' (a message) or 'raw'",
        ),
        (
            '[[steps]]\nname = "i"\nsend = "item_information"\n'
            "expect = { ok = true }\n",
            "steps[1] (i).expect.ok: a 18 reply has no ok flag",
        ),
        (
            '[[steps]]\nname = "s"\nsend = { message = "sc_status" }\n',
            "steps[1] (s).send: must be a string",
        ),
        (
            '[[steps]]\nname = "c"\nsend = ["checkin"]\n',
            "steps[1] (c).send: must be a string",
        ),
        ('[plan]\non_failure = "panic"\n[[steps]]\nraw = "99"\n', "plan.on_failure"),
        ("[plan]\nname = \n", "not a valid TOML file"),
        ('[plan]\nname = "empty"\n', "steps: the plan needs at least one"),
    ],
)
def test_plan_mistakes_name_the_file_step_and_key(
    tmp_path: Path, plan: str, message: str
) -> None:
    """Each mistake is reported with the file, the step and the key at fault."""
    path = write_plan(tmp_path, plan)

    with pytest.raises(PlanError) as raised:
        load_plan(path, defaults={"institution": "CITY"})

    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_a_bad_plan_exits_with_status_2_before_connecting(tmp_path: Path) -> None:
    """`conform` with a broken plan prints the error and exits 2 (port 1: nothing
    is listening, so a connection attempt would fail differently)."""
    path = write_plan(tmp_path, '[[steps]]\nname = "x"\nsend = "nothing"\n')

    result = CliRunner().invoke(sip, ["--port", "1", "conform", "--plan", str(path)])

    assert 2 == result.exit_code
    assert f"Error: {path}: steps[1] (x).send: unknown message" in result.output


def test_variables_from_the_command_line_win_over_the_plan(tmp_path: Path) -> None:
    """--var beats [variables]; the plan's value beats the built-in default;
    fields left out take the defaults (AO from ${institution})."""
    path = write_plan(
        tmp_path,
        """
        [variables]
        patron = "111"
        institution = "PLAN"
        [[steps]]
        send = "patron_status"
        fields = { AA = "${patron}" }
        """,
    )

    plan = load_plan(path, {"patron": "222"}, {"institution": "DEFAULT"})
    message = plan.steps[0].message

    assert message is not None
    assert "222" == message.patron_identifier  # type: ignore[attr-defined]
    assert "PLAN" == message.institution_id  # type: ignore[attr-defined]
    assert "24" == plan.steps[0].expect.command


# --- judging a reply -------------------------------------------------------------


def test_judge_reads_fields_from_the_raw_frame() -> None:
    """Fixed fields are cut by width, repeated fields match on any value, BL is
    the ok flag of 24, and AY/AZ are not fields."""
    from sip2server.conformance_plan import Expectation  # noqa: PLC0415

    reply = (
        b"24Y             00120261204    120000AOCITY|AA21|AEAda|BLY|"
        b"AFfirst|AFsecond|AY3AZ0000"
    )
    expect = Expectation(
        command="24",
        ok=True,
        fixed={"patron_status": "Y             ", "language": "001"},
        present=["AE"],  # type: ignore[arg-type]
        absent=["AY", "AZ", "BV"],  # type: ignore[arg-type]
        equal={"AF": "second"},
        match={"AA": re.compile("^2")},
        decodes=False,
    )

    assert [] == judge(expect, reply)
    assert ["ok: expected no, got BL 'Y'"] == judge(
        Expectation(ok=False, decodes=False), reply
    )


@pytest_twisted.inlineCallbacks
def test_raw_steps_with_checksums_and_a_step_on_a_new_connection(
    sqlite_target: SipTarget,  # noqa: F811
    tmp_path: Path,
) -> Any:
    """A raw 99 with add_checksum gets 98; a checkout sent by its code "11" on a
    new connection, which has not logged in, is refused (12 with ok 0)."""
    plan = write_plan(
        tmp_path,
        f"""
        [[steps]]
        name = "login"
        send = "93"
        fields = {{ CN = "{LOGIN}", CO = "{PASSWORD}" }}

        [[steps]]
        name = "raw status"
        raw = "9900302.00"
        add_checksum = true
        expect = {{ command = "98", fixed = {{ online_status = "Y" }} }}

        [[steps]]
        name = "checkout without a login"
        send = "11"
        new_connection = true
        fields = {{ AA = "{ADA}", AB = "{ITEMS[6]}", AD = "{PIN}" }}
        expect = {{ ok = false, match = {{ AF = "logged in" }} }}
        """,
    )

    result = yield in_thread(
        lambda: conform(sqlite_target.port, plan, options=("--institution", "CITY"))
    )

    assert 0 == result.exit_code, result.output
    assert "PASS   2 raw status (99 -> 98)\n" in result.output
    assert "PASS   3 checkout without a login (11 -> 12)\n" in result.output


@pytest_twisted.inlineCallbacks
def test_pin_dash_asks_for_the_pin_without_echo(
    sqlite_target: SipTarget,  # noqa: F811
) -> Any:
    """`--pin -` reads the PIN from a prompt, not echoed; the server finds it
    right (CQ Y) and the frame sent shows it as ***."""
    args = [
        "--port", str(sqlite_target.port), "--login", LOGIN, "--password", PASSWORD,
        "--institution", INSTITUTION, "--show-wire", "patron", ADA, "--pin", "-",
        "--brief",
    ]  # fmt: skip

    result = yield in_thread(lambda: CliRunner().invoke(sip, args, input=f"{PIN}\n"))

    assert 0 == result.exit_code, result.output
    assert "Patron PIN: \n" in result.output
    assert "  CQ valid_patron_password: yes\n" in result.output
    assert "|AD***|" in result.output
    assert f"AD{PIN}" not in result.output


@pytest_twisted.inlineCallbacks
def test_pin_dash_without_a_password_asks_for_the_sip_password_first(
    sqlite_target: SipTarget,  # noqa: F811
) -> Any:
    """With --login and no password, `--pin -` asks for the SIP password (named
    with its login) before the patron's PIN, so answers typed in the order of
    the command line log in and then find the PIN right (CQ Y)."""
    args = [
        "--port", str(sqlite_target.port), "--login", LOGIN,
        "--institution", INSTITUTION, "patron", ADA, "--pin", "-", "--brief",
    ]  # fmt: skip

    result = yield in_thread(
        lambda: CliRunner().invoke(
            sip, args, input=f"{PASSWORD}\n{PIN}\n", env={"ILS_SIP_PASSWORD": None}
        )
    )

    assert 0 == result.exit_code, result.output
    password_prompt = result.output.index(f"SIP password of login '{LOGIN}': ")
    assert password_prompt < result.output.index("Patron PIN: ")
    assert "LoginResponse (94)\n  ok: yes\n" in result.output
    assert "  CQ valid_patron_password: yes\n" in result.output
