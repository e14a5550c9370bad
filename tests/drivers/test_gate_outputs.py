"""The gate's outputs and inputs on real ports and processes, and its configuration.

The relay runs on pyserial's `loop://`, where a raised RTS reads back as CTS
and DTR as DSR, and on a pty, which has no modem-control lines at all. The
alarm command is a real script writing to a file; the people counter samples
`loop://`'s CTS on a `Clock`.
"""

from __future__ import annotations

import os
import pty
import signal
import socket
import subprocess
import sys
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
import serial
from twisted.internet.task import Clock

from drivers.gate.alarm import (
    AlarmOutputError,
    ReopeningRelay,
    build_alarm,
    command_alarm,
    open_serial_relay,
)
from drivers.gate.checks import check_devices
from drivers.gate.config import (
    AlarmSection,
    GateConfigError,
    InputLine,
    PeopleCounterSection,
    ReaderDriver,
    load_gate_config,
    parse_gate_config,
)
from drivers.gate.people import PeopleCounter, ReopeningPeopleCounter
from tests.conftest import REPO_ROOT

SHIPPED = REPO_ROOT / "config" / "gate.toml"


def relay_section(**values: object) -> AlarmSection:
    """An alarm section for a serial relay, as an operator would write it."""
    return AlarmSection.model_validate({"output": "serial", **values})


def test_relay_raises_rts_for_the_hold_time() -> None:
    """An alarm raises RTS at once and lowers it after hold_ms, then fires."""
    clock = Clock()
    relay = open_serial_relay(relay_section(port="loop://", hold_ms=1500), clock)
    assert relay.port.cts is False

    done = relay.sound()
    assert relay.port.cts is True

    clock.advance(1.499)
    assert relay.port.cts is True
    assert not done.called
    clock.advance(0.001)
    assert relay.port.cts is False
    assert done.called
    relay.close()


def test_a_second_alarm_extends_the_hold() -> None:
    """An alarm while the line is held keeps it raised for a full hold from then."""
    clock = Clock()
    relay = open_serial_relay(relay_section(port="loop://", hold_ms=1000), clock)
    first = relay.sound()
    clock.advance(0.6)
    second = relay.sound()

    clock.advance(0.9)
    assert relay.port.cts is True
    clock.advance(0.1)
    assert relay.port.cts is False
    assert first.called
    assert second.called
    relay.close()


def test_relay_on_dtr_and_close_lowers_the_line() -> None:
    """line = 'dtr' drives DTR (read back as DSR); closing mid-hold lowers it."""
    clock = Clock()
    relay = open_serial_relay(relay_section(port="loop://", line="dtr"), clock)
    port = relay.port
    relay.sound()
    assert port.dsr is True
    assert port.cts is False

    relay.close()

    assert port.dtr is False
    assert [] == clock.getDelayedCalls()


@pytest.fixture
def pty_path() -> Iterator[str]:
    """The device name of a raw pty, whose other end stays open for the test."""
    main, secondary = pty.openpty()
    tty.setraw(secondary)
    try:
        yield os.ttyname(secondary)
    finally:
        os.close(main)
        os.close(secondary)


def test_a_pty_cannot_drive_a_relay_and_says_so(pty_path: str) -> None:
    """A port without modem-control lines is refused at start, naming key and line."""
    with pytest.raises(AlarmOutputError) as caught:
        open_serial_relay(relay_section(port=pty_path), Clock())

    message = str(caught.value)
    assert message.startswith(f"alarm.port: {pty_path} cannot drive its RTS line: ")
    assert "Inappropriate ioctl" in message


def test_a_missing_relay_port_is_named() -> None:
    """A port that does not exist is reported with its key and name."""
    with pytest.raises(AlarmOutputError, match=r"^alarm\.port: cannot open /dev/nx"):
        open_serial_relay(relay_section(port="/dev/nx-gate-relay"), Clock())


@pytest.fixture
def siren(tmp_path: Path) -> tuple[Path, Path]:
    """A small script that appends its arguments to a file, and that file."""
    record = tmp_path / "alarms.txt"
    script = tmp_path / "siren"
    script.write_text(
        '#!/bin/sh\nprintf "%s|" "$@" >> "$ALARM_RECORD"\necho >> "$ALARM_RECORD"\n'
    )
    script.chmod(0o755)
    return script, record


@pytest_twisted.ensureDeferred
async def test_command_alarm_runs_the_program_without_a_shell(
    siren: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The argv list reaches the program unchanged: no shell splits or runs it."""
    from twisted.internet import reactor  # noqa: PLC0415

    script, record = siren
    monkeypatch.setenv("ALARM_RECORD", str(record))
    marker = tmp_path / "shell-ran"
    section = AlarmSection.model_validate(
        {
            "output": "command",
            "command": [str(script), "gate east", f"; touch {marker}"],
        }
    )
    alarm = command_alarm(section, reactor)

    await alarm.sound()
    await alarm.sound()

    assert f"gate east|; touch {marker}|\n" * 2 == record.read_text()
    assert not marker.exists()


@pytest_twisted.ensureDeferred
async def test_command_alarm_kills_a_run_that_outlasts_its_timeout(
    tmp_path: Path,
) -> None:
    """A hanging alarm program is killed after command_timeout, and the gate goes on."""
    from twisted.internet import reactor  # noqa: PLC0415

    script = tmp_path / "stuck"
    script.write_text("#!/bin/sh\nexec sleep 60\n")
    script.chmod(0o755)
    section = AlarmSection.model_validate(
        {"output": "command", "command": [str(script)], "command_timeout": 0.2}
    )
    alarm = command_alarm(section, reactor)

    first = alarm.sound()
    again = alarm.sound()
    await first

    assert first is again  # one run at a time: the second alarm joined the first


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, killed but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest_twisted.ensureDeferred
async def test_command_that_leaves_a_child_in_the_background_ends_on_exit(
    tmp_path: Path,
) -> None:
    """A siren script that starts its player in the background and exits ends
    its run at once, so the next alarm runs it again (it used to wait for the
    player, holding the pipes, and silence every later alarm)."""
    from twisted.internet import reactor  # noqa: PLC0415

    record = tmp_path / "players"
    script = tmp_path / "siren"
    script.write_text(f'#!/bin/sh\nsleep 30 &\necho $! >> "{record}"\nexit 0\n')
    script.chmod(0o755)
    section = AlarmSection.model_validate(
        {"output": "command", "command": [str(script)], "command_timeout": 20}
    )
    alarm = command_alarm(section, reactor)

    try:
        await alarm.sound().addTimeout(10, reactor)
        await alarm.sound().addTimeout(10, reactor)
    finally:
        players = [int(pid) for pid in record.read_text().split()]
        for pid in players:
            os.killpg(os.getpgid(pid), signal.SIGKILL)

    assert 2 == len(players)


@pytest_twisted.ensureDeferred
async def test_command_killed_on_timeout_takes_its_background_children_along(
    tmp_path: Path,
) -> None:
    """A run that outlasts command_timeout is killed with its process group, so a
    player it started in the background stops too."""
    from twisted.internet import reactor  # noqa: PLC0415

    record = tmp_path / "player"
    script = tmp_path / "stuck"
    script.write_text(f'#!/bin/sh\nsleep 60 &\necho $! > "{record}"\nexec sleep 60\n')
    script.chmod(0o755)
    section = AlarmSection.model_validate(
        {"output": "command", "command": [str(script)], "command_timeout": 0.5}
    )
    alarm = command_alarm(section, reactor)

    await alarm.sound().addTimeout(10, reactor)

    assert not _alive(int(record.read_text()))


def test_command_that_is_not_a_program_is_named() -> None:
    """A command whose program cannot be found is refused with its key."""
    section = AlarmSection.model_validate(
        {"output": "command", "command": ["no-such-siren-program", "1"]}
    )
    with pytest.raises(AlarmOutputError) as caught:
        command_alarm(section, Clock())

    assert (
        "alarm.command[0]: 'no-such-siren-program' is not an executable program"
        == str(caught.value)
    )


def test_people_counter_counts_rising_edges_of_cts() -> None:
    """Each low-to-high change of the input line counts one person, once."""
    clock = Clock()
    port = serial.serial_for_url("loop://", do_not_open=True)
    port.rts = False
    port.open()
    counter = PeopleCounter(port, InputLine.CTS, 0.02, clock)
    counter.start()

    # Two people: high for 3 samples, low, high for 1 sample, low.
    for level in [True, True, True, False, False, True, False, False]:
        port.rts = level
        clock.advance(0.02)

    assert 2 == counter.count
    counter.stop()
    assert [] == clock.getDelayedCalls()


def test_shipped_example_configuration_is_valid() -> None:
    """config/gate.toml loads, with the ISO AFI values as its defaults."""
    config = load_gate_config(SHIPPED)

    assert 0x07 == config.security.secured_afi
    assert 0xC2 == config.security.unsecured_afi
    assert config.sip is not None
    assert "127.0.0.1" == config.sip.host


def test_bad_configuration_names_file_key_and_problem(tmp_path: Path) -> None:
    """Every mistake is reported on its own line with the file and the key."""
    bad = tmp_path / "gate.toml"
    bad.write_text(
        "[reader]\n"
        'driver = "3m810"\n'
        'port = "/dev/ttyUSB0"\n'
        "reconnect_min = 5\n"
        "reconnect_max = 2\n"
        "[security]\n"
        "secured_afi = 0x107\n"
        "[alarm]\n"
        'output = "serial"\n'
        "[sip]\n"
        'login = "gate1"\n'
    )

    with pytest.raises(GateConfigError) as caught:
        load_gate_config(bad)

    lines = str(caught.value).splitlines()
    assert [
        f"{bad}: reader: reconnect_max must not be below reconnect_min",
        f"{bad}: security.secured_afi: Input should be less than or equal to 255",
        f"{bad}: alarm: output = 'serial' needs 'port'",
        f"{bad}: sip.password: Field required",
        f"{bad}: sip.institution: Field required",
    ] == lines


def test_eas_with_a_3m_reader_is_refused() -> None:
    """EAS security with the 3M 810 protocol, which has no EAS command, is an error."""
    with pytest.raises(GateConfigError) as caught:
        parse_gate_config(
            {
                "reader": {"driver": "3m810", "port": "loop://"},
                "security": {"mode": "eas"},
            },
            "site.toml",
        )

    assert str(caught.value).startswith(
        "site.toml: (top level): security.mode = 'eas' needs a reader with EAS"
    )


def test_missing_and_broken_files_are_named(tmp_path: Path) -> None:
    """A missing file and a file that is not TOML are both named in the message."""
    broken = tmp_path / "broken.toml"
    broken.write_text("[gate\n")

    with pytest.raises(GateConfigError, match="no such file"):
        load_gate_config(tmp_path / "none.toml")
    with pytest.raises(GateConfigError) as caught:
        load_gate_config(broken)
    assert str(caught.value).startswith(f"{broken}: (syntax): ")


def test_a_non_utf8_gate_file_is_one_line_naming_it(tmp_path: Path) -> None:
    """A file saved in Latin-1 is a GateConfigError naming the file and the
    byte, not a UnicodeDecodeError traceback."""
    latin1 = tmp_path / "gate.toml"
    latin1.write_bytes(b'[gate]\nname = "caf\xe9"\n')

    with pytest.raises(GateConfigError) as caught:
        load_gate_config(latin1)

    assert (
        f"{latin1}: (file): not UTF-8 text (byte 18: invalid continuation byte)"
        == str(caught.value)
    )


def _ils_gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ils.cli", "gate", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ils_gate_check_accepts_the_shipped_file() -> None:
    """`ils gate --config config/gate.toml --check` says the file is fine, and
    plainly that the devices were not checked, and how to check them."""
    result = _ils_gate("--config", str(SHIPPED), "--check")

    assert 0 == result.returncode, result.stderr
    assert (
        f"{SHIPPED}: syntax and keys ok; devices not checked "
        "(--check-devices opens them)\n"
    ) == result.stdout


def test_ils_gate_refuses_a_bad_file_with_its_key(tmp_path: Path) -> None:
    """`ils gate` with a broken file exits 1 naming the file, key and problem."""
    bad = tmp_path / "gate.toml"
    bad.write_text('[reader]\ndriver = "acme"\nport = "/dev/ttyUSB0"\n')

    result = _ils_gate("--config", str(bad))

    assert 1 == result.returncode
    assert f"{bad}: reader.driver: Input should be 'feig' or '3m810'" in result.stderr


def test_relay_port_missing_at_start_is_retried_until_it_works() -> None:
    """A relay port nobody answers yet: alarms are only logged, the port is tried
    again after 1 s, then 2 s, and once it answers the next alarm raises the line
    (pyserial's socket:// port, which accepts line changes without wires)."""
    clock = Clock()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        host, port = listener.getsockname()
        relay = ReopeningRelay(
            relay_section(port=f"socket://{host}:{port}", hold_ms=500), clock
        )
        assert relay.relay is None
        assert relay.sound().called  # logged only, at once

        clock.advance(1.0)  # first retry: still refused
        assert relay.relay is None
        listener.listen()
        clock.advance(1.9)  # the second retry comes 2 s after the first
        assert relay.relay is None
        clock.advance(0.1)
        opened = relay.relay
        assert opened is not None

        relay.sound()
        assert opened.held
        relay.close()


def test_check_devices_names_a_missing_relay_port_as_retried() -> None:
    """--check-devices reports a relay port that cannot be opened, and says the
    gate would start anyway and keep trying it."""
    config = parse_gate_config(
        {
            "reader": {"driver": "feig", "port": "loop://"},
            "alarm": {"output": "serial", "port": "/dev/nx-gate-relay"},
        },
        "site.toml",
    )

    [problem] = check_devices(config)

    assert "alarm.port" == problem.key
    assert problem.problem.startswith("cannot open /dev/nx-gate-relay")
    assert problem.retried
    assert problem.line().endswith(
        "(the gate starts anyway, logs alarms and keeps trying it)"
    )


def test_check_devices_finds_nothing_wrong_with_usable_devices() -> None:
    """A reader and a relay on loop:// can both be opened: no problems."""
    config = parse_gate_config(
        {
            "reader": {"driver": "feig", "port": "loop://"},
            "alarm": {"output": "serial", "port": "loop://"},
        },
        "site.toml",
    )

    assert [] == check_devices(config)


def test_ils_gate_check_devices_reports_what_start_would_meet(tmp_path: Path) -> None:
    """`ils gate --check-devices` exits 1 naming a missing reader port (retried)
    and an alarm program that is not executable (refused), one line each."""
    siren = tmp_path / "siren"
    siren.write_text("#!/bin/sh\n")  # not executable
    config = tmp_path / "gate.toml"
    config.write_text(
        '[reader]\ndriver = "feig"\nport = "/dev/nx-gate-reader"\n'
        f'[alarm]\noutput = "command"\ncommand = ["{siren}"]\n'
    )

    result = _ils_gate("--config", str(config), "--check-devices")

    assert 1 == result.returncode
    lines = result.stderr.splitlines()
    assert "Error: devices not usable now:" == lines[0]
    assert lines[1].startswith(
        f"{config}: reader.port: cannot open reader port /dev/nx-gate-reader"
    )
    assert lines[1].endswith(
        "(the gate starts anyway, logs alarms and keeps trying it)"
    )
    assert (
        f"{config}: alarm.command[0]: {str(siren)!r} is not an executable program "
        "(the gate refuses to start)"
    ) == lines[2]


def test_reader_driver_3m_is_read_as_3m810() -> None:
    """`driver = "3m"`, the simulator's name for the protocol, means the 3M 810."""
    config = parse_gate_config(
        {"reader": {"driver": "3m", "port": "loop://"}}, "site.toml"
    )

    assert ReaderDriver.M810 is config.reader.driver


def test_people_counter_port_missing_at_start_is_retried() -> None:
    """A people counter port nobody answers yet counts nobody, is tried again
    after 1 s and 2 s, and counts once it opens (socket:// as the port)."""
    clock = Clock()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        host, port = listener.getsockname()
        section = PeopleCounterSection.model_validate(
            {"port": f"socket://{host}:{port}"}
        )
        counter = ReopeningPeopleCounter(section, clock)
        counter.start()
        assert counter.counter is None
        assert 0 == counter.count

        clock.advance(1.0)
        assert counter.counter is None
        listener.listen()
        clock.advance(2.0)

        assert counter.counter is not None
        counter.stop()


def test_a_missing_relay_port_does_not_stop_the_gate_from_starting() -> None:
    """build_alarm, as start_gate calls it, gives a relay that is retried
    instead of raising for a port that is not there."""
    alarm = build_alarm(relay_section(port="/dev/nx-gate-relay"), Clock())

    assert isinstance(alarm, ReopeningRelay)
    assert alarm.relay is None
    alarm.close()
