"""`ils sip conform`: values captured from replies and used by later steps, the
sequence numbers (AY) a terminal would send and their echo, and the plan
mistakes around both.

The server is the test library's, in the test's reactor on a SQLite file, or a
small SIP2 server on loopback that never echoes AY; the command runs in a
thread through click's test runner.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from ils.fees import FeeService
from ils.models import FeeKind
from sip2server.conformance import capture, judge
from sip2server.conformance_plan import Capture, Expectation, PlanError, load_plan
from tests.sip2server.conftest import ADA, ITEMS, LOGIN, PASSWORD, PIN, SipTarget
from tests.sip2server.test_conformance import (  # noqa: F401
    conform,
    misbehaving,
    write_plan,
)
from tests.sip2server.test_sip_command import sqlite_target  # noqa: F401
from tests.sip2server.test_wire_behaviour import in_thread

_LOGIN_STEP = f"""
    [variables]
    institution = "CITY"
    patron = "{ADA}"
    pin = "{PIN}"
    currency = "GBP"

    [[steps]]
    name = "login"
    send = "login"
    fields = {{ CN = "{LOGIN}", CO = "{PASSWORD}" }}
    on_failure = "stop"
    """


# --- captures against a real server ---------------------------------------------


@pytest_twisted.inlineCallbacks
def test_a_fee_id_cut_from_the_second_av_is_paid_by_a_later_step(
    sqlite_target: SipTarget,  # noqa: F811
    tmp_path: Path,
) -> Any:
    """The id cut by a pattern from the second AV of a 64, the fixed
    fine_items_count and AA are captured; the 37 pays that fee by CG, so the
    first fee is still owed in full, and a raw 23 is sent for that AA."""
    fees = FeeService(sqlite_target.library.database)
    torn = fees.charge(
        ADA, kind=FeeKind.DAMAGE, amount_minor=250, description="torn", by="desk"
    )
    card = fees.charge(
        ADA, kind=FeeKind.MANUAL, amount_minor=100, description="new card", by="desk"
    )
    plan = write_plan(
        tmp_path,
        _LOGIN_STEP
        + """
        [[steps]]
        name = "the fees"
        send = "patron_information"
        fields = { AA = "${patron}", AD = "${pin}", summary = "   Y      " }
        [steps.capture]
        second = { field = "AV", pattern = '^(\\d+) ', index = 2 }
        owed = "fine_items_count"
        seen = "AA"

        [[steps]]
        name = "pay the second"
        send = "fee_paid"
        [steps.fields]
        AA = "${patron}"
        AD = "${pin}"
        BV = "1.00"
        CG = "${second}"
        currency_type = "GBP"
        [steps.expect]
        ok = true
        match = { AF = "^Paid 1.00 GBP; 2.50 GBP still owed" }

        [[steps]]
        name = "a raw 23 for the patron the 64 named"
        raw = "2300120261204    120000AOCITY|AA${seen}|AC|AD${pin}|"
        add_checksum = true
        expect = { command = "24", ok = true, equal = { AA = "${seen}" } }
        """,
    )

    result = yield in_thread(conform, sqlite_target.port, plan, "--report", "json")
    report = json.loads(result.output)

    assert 0 == result.exit_code, result.output
    captured = report["steps"][1]["captured"]
    assert {"second": str(card.id), "owed": "0002", "seen": ADA} == captured
    assert f"|CG{card.id}|" in report["steps"][2]["sent"]
    assert f"|AA{ADA}|AC|AD***|AY3AZ" in report["steps"][3]["sent"]
    left = {fee.id: fee.balance_minor for fee in fees.fees_of(ADA)}
    assert {torn.id: 250} == left


@pytest_twisted.inlineCallbacks
def test_captures_that_find_nothing_fail_their_step_and_skip_the_users(
    sqlite_target: SipTarget,  # noqa: F811
    tmp_path: Path,
) -> Any:
    """A patron with no fees gives no FE (the step fails naming the field) and
    the step that pays it is skipped; asking for a second AU of one loan fails
    with the count; a captured name that cannot be a hold mode fails the step
    that sends it."""
    plan = write_plan(
        tmp_path,
        _LOGIN_STEP
        + f"""
        [[steps]]
        name = "fee details"
        send = "patron_information"
        fields = {{ AA = "${{patron}}", AD = "${{pin}}", summary = "      Y   " }}
        capture = {{ fee_id = "FE" }}

        [[steps]]
        name = "pay it"
        send = "fee_paid"
        fields = {{ AA = "${{patron}}", BV = "1.00", CG = "${{fee_id}}" }}

        [[steps]]
        name = "borrow one"
        send = "checkout"
        fields = {{ AA = "${{patron}}", AB = "{ITEMS[7]}", AD = "${{pin}}" }}

        [[steps]]
        name = "loans"
        send = "patron_information"
        fields = {{ AA = "${{patron}}", AD = "${{pin}}", summary = "  Y       " }}
        capture = {{ second = {{ field = "AU", index = 2 }}, who = "AE" }}

        [[steps]]
        name = "a name as hold mode"
        send = "hold"
        fields = {{ hold_mode = "${{who}}", AA = "${{patron}}", AB = "{ITEMS[8]}" }}
        """,
    )

    result = yield in_thread(conform, sqlite_target.port, plan)
    lines = result.output.splitlines()

    assert 1 == result.exit_code, result.output
    assert "FAIL   2 fee details (63 -> 64)" == lines[2]
    assert "         capture fee_id: FE: the 64 reply has no FE" == lines[3]
    assert "SKIP   3 pay it (37 -> 38)" == lines[6]
    assert (
        "         not run: ${fee_id} was not captured (step 2 captures it)"
        == (lines[7])
    )
    assert "PASS   4 borrow one (11 -> 12)" == lines[8]
    assert "FAIL   5 loans (63 -> 64)" == lines[9]
    assert "         captured who = 'Ada Okafor'" == lines[10]
    assert (
        "         capture second: AU (value 2): the 64 reply has 1 such value, not 2"
        == lines[11]
    )
    assert "FAIL   6 a name as hold mode (15 -> 16)" == lines[14]
    assert lines[15].startswith(
        "         cannot be sent with the captured values: "
        "steps[6] (a name as hold mode).fields.hold_mode: 'Ada Okafor' cannot be "
        "sent here"
    )
    assert "6 steps: 2 passed, 3 failed, 1 skipped" == lines[-1]


# --- sequence numbers ------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_sequence_numbers_count_like_a_terminals_and_replies_echo_them(
    sqlite_target: SipTarget,  # noqa: F811
    tmp_path: Path,
) -> Any:
    """AY counts 0-9 and round again per message; a step's sequence = 7 is sent
    and the count goes on at 8; a 97 carries none and its reply (the last one
    again) echoes the request before it; a new connection starts at 0."""
    status = '\n[[steps]]\nname = "status"\nsend = "sc_status"\n'
    plan = write_plan(
        tmp_path,
        _LOGIN_STEP
        + status * 10
        + """
        [[steps]]
        name = "status as 7"
        send = "sc_status"
        sequence = 7

        [[steps]]
        name = "status after 7"
        send = "sc_status"

        [[steps]]
        name = "resend"
        send = "request_acs_resend"
        expect = { command = "98" }

        [[steps]]
        name = "login again"
        send = "login"
        new_connection = true
        fields = { CN = "${login}", CO = "${password}" }
        """.replace("${login}", LOGIN).replace("${password}", PASSWORD),
    )

    result = yield in_thread(conform, sqlite_target.port, plan, "--report", "json")
    report = json.loads(result.output)
    sent = [re.search(r"(AY\d)?AZ", step["sent"]).group(1) for step in report["steps"]]
    received = [step["received"][-9:-6] for step in report["steps"]]

    assert 0 == result.exit_code, result.output
    assert [
        "AY0", "AY1", "AY2", "AY3", "AY4", "AY5", "AY6", "AY7", "AY8", "AY9", "AY0",
        "AY7", "AY8", None, "AY0",
    ] == sent  # fmt: skip
    assert report["steps"][13]["sent"].startswith("97AZ")
    assert ["AY0", "AY8", "AY8"] == [received[10], received[12], received[13]]


def test_judge_checks_the_echoed_sequence() -> None:
    """A reply with another AY, or none, fails with the number expected; a 96
    and a step with echo_sequence = false are not checked."""
    expect = Expectation(decodes=False)

    assert [] == judge(expect, b"941AY3AZFDFA", sequence=3)
    assert ["AY: expected 2 (the request's), got 3"] == judge(
        expect, b"941AY3AZFDFA", sequence=2
    )
    assert ["AY: expected 2 (the request's), missing"] == judge(
        expect, b"941", sequence=2
    )
    assert [] == judge(expect, b"96AZFEF6", sequence=2)
    assert [] == judge(
        Expectation(decodes=False, echo_sequence=False), b"941", sequence=2
    )


@pytest_twisted.inlineCallbacks
def test_a_server_that_does_not_echo_ay_fails_unless_the_plan_says_not_to_check(
    misbehaving: tuple[int, str],  # noqa: F811
    tmp_path: Path,
) -> Any:
    """A server answering a login with a bare 941 fails on AY; with
    [plan] echo_sequence = false the same login passes."""
    step = '[[steps]]\nsend = "login"\nfields = { CN = "any", CO = "secret" }\n'
    checked = write_plan(tmp_path, step)
    unchecked = tmp_path / "unchecked.toml"
    unchecked.write_text("[plan]\necho_sequence = false\n" + step)

    strict = yield in_thread(conform, misbehaving[0], checked)
    lenient = yield in_thread(conform, misbehaving[0], unchecked)

    assert 1 == strict.exit_code
    assert (
        "         AY: expected 0 (the request's), missing"
        == (strict.output.splitlines()[2])
    )
    assert 0 == lenient.exit_code, lenient.output


def test_capture_reads_fixed_fields_repeated_fields_and_patterns() -> None:
    """From one 64: a fixed count, the first AU, the second FE and a pattern's
    whole match when it has no group."""
    reply = (
        b"64              00120261204    120000000000020002000000000000"
        b"AOCITY|AA21|AEAda|AU31|AU32|FA1.00|FE7|FA2.00|FE9|AY3AZ0000"
    )
    captures = (
        Capture(variable="count", field="charged_items_count", fixed=True),
        Capture(variable="loan", field="AU"),
        Capture(variable="fee", field="FE", index=2),
        Capture(variable="money", field="FA", pattern=re.compile(r"\d\.\d")),
    )

    values, reasons = capture(captures, reply)

    assert [] == reasons
    assert {"count": "0002", "loan": "31", "fee": "9", "money": "1.0"} == values


# --- plan mistakes ---------------------------------------------------------------

_INFO = '[[steps]]\nname = "i"\nsend = "patron_information"\nfields = { AA = "1" }\n'


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (
            _INFO + 'capture = { x = "ZZ" }\n',
            "steps[1] (i).capture.x.field: a 64 reply has no field ZZ (its fields: "
            "AO AA AE BZ",
        ),
        (
            _INFO + 'capture = { x = "fine_count" }\n',
            "steps[1] (i).capture.x.field: a 64 reply has no fixed field 'fine_count'",
        ),
        (
            _INFO + 'capture = { x = { field = "AU", index = 0 } }\n',
            "steps[1] (i).capture.x.index: must be a whole number from 1",
        ),
        (
            _INFO + "capture = { x = { field = \"AV\", pattern = '(a)(b)' } }\n",
            "steps[1] (i).capture.x.pattern: may hold at most one group",
        ),
        (
            _INFO + 'capture = { x = { field = "AU", colour = "red" } }\n',
            "steps[1] (i).capture.x.colour: unknown key",
        ),
        (
            _INFO + 'capture = { x = { field = "hq", extension = true } }\n',
            "steps[1] (i).capture.x.field: an extension field is a two-letter code",
        ),
        (
            '[[steps]]\nname = "r"\nraw = "6300020261204    120000"\n'
            'capture = { x = "AU" }\n',
            "steps[1] (r).capture.x: the reply's command is not known",
        ),
        (
            '[[steps]]\nname = "pay"\nsend = "fee_paid"\n'
            'fields = { AA = "1", CG = "${fee_id}" }\n' + _INFO + "\n"
            'capture = { fee_id = "FE" }\n',
            "steps[1] (pay).fields.CG: variable ${fee_id} is used before any step "
            "captures it (step 2 is the first to capture it)",
        ),
        (
            _INFO.replace('"1"', '"${who}"') + 'capture = { who = "AA" }\n',
            "steps[1] (i).fields.AA: variable ${who} is used before any step "
            "captures it (step 1 is the first to capture it)",
        ),
        (
            '[[steps]]\nname = "s"\nsend = "sc_status"\nsequence = 10\n',
            "steps[1] (s).sequence: must be a digit 0 to 9",
        ),
        (
            '[[steps]]\nname = "s"\nsend = "97"\nsequence = 1\n',
            "steps[1] (s).sequence: a 97 never carries a sequence number",
        ),
        (
            '[[steps]]\nname = "s"\nraw = "9900302.00"\nsequence = 1\n',
            "steps[1] (s).sequence: a raw frame without add_checksum is sent as",
        ),
        (
            '[plan]\necho_sequence = "yes"\n[[steps]]\nraw = "99"\n',
            "plan.echo_sequence: must be true or false",
        ),
        (
            '[plan]\ntimeout = 1e308\n[[steps]]\nraw = "99"\n',
            "plan.timeout: must be a number of seconds above 0 and at most 3600",
        ),
        (
            '[plan]\ntimeout = nan\n[[steps]]\nraw = "99"\n',
            "plan.timeout: must be a number of seconds above 0 and at most 3600",
        ),
        (
            '[[steps]]\nname = "s"\nraw = "9900302.00\\r\\n9900302.00"\n',
            "steps[1] (s).raw: holds a line break",
        ),
    ],
)
def test_capture_and_sequence_mistakes_name_the_file_step_and_key(
    tmp_path: Path, plan: str, message: str
) -> None:
    """Each mistake is reported with the file, the step and the key at fault."""
    path = write_plan(tmp_path, plan)

    with pytest.raises(PlanError) as raised:
        load_plan(path, defaults={"institution": "CITY"})

    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


def test_a_step_using_a_captured_value_is_built_at_run_time(tmp_path: Path) -> None:
    """A step that uses a value an earlier step captures has no message yet and
    waits for it; its other fields are still checked when the plan is read; a
    [variables] value of that name serves the steps before the capture."""
    path = write_plan(
        tmp_path,
        """
        [variables]
        item = "default"
        [[steps]]
        send = "item_information"
        fields = { AB = "${item}" }
        [[steps]]
        send = "patron_information"
        fields = { AA = "1" }
        capture = { item = "AU" }
        [[steps]]
        send = "renew"
        fields = { AA = "1", AB = "${item}" }
        """,
    )

    plan = load_plan(path, defaults={"institution": "CITY"})
    first, _, renew = plan.steps

    assert first.message is not None
    assert "default" == first.message.item_identifier  # type: ignore[attr-defined]
    assert renew.message is None
    assert frozenset({"item"}) == renew.waits_for
    assert "29" == renew.request_command
    assert {"item": 2} == plan.captured_by
    with pytest.raises(PlanError, match=r"fields\.no_block: 'x' cannot be sent"):
        load_plan(
            write_plan(
                tmp_path,
                path.read_text().replace(
                    'AA = "1", AB = "${item}" }',
                    'AA = "1", AB = "${item}", no_block = "x" }',
                ),
            ),
            defaults={"institution": "CITY"},
        )
