"""The gate end to end: the reader simulator, a real reader driver over loopback
TCP or a pty, a running SIP2 server on a real database, and the alarm relay on
pyserial's `loop://` (where the raised RTS line reads back as CTS).

The gate is started by `start_gate`, as `ils gate` starts it, with its threads;
the last test runs `ils gate` itself as a process against the simulator's own
command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import serial
from twisted.internet import defer, threads

from drivers.events import DeviceBack, DeviceLost
from drivers.gate.alarm import SerialRelay, open_serial_relay
from drivers.gate.app import RunningGate, start_gate
from drivers.gate.config import GateConfig, parse_gate_config
from drivers.gate.gate import GateEvent, ItemExplained, TagPassed
from drivers.rfid.feig import FeigReader
from drivers.rfid.simulator import ReaderSimulator, SimulatedTag, TagField
from drivers.rfid.tags import BasicBlock
from sip2server.client import SipClient
from sip2server.protocol import (
    CheckoutRequest,
    CheckoutResponse,
    CirculationStatus,
    LoginRequest,
)
from tests.conftest import REPO_ROOT
from tests.drivers.test_gate_sip import LibraryServer, library_server
from tests.sip2server.conftest import (
    ADA,
    INSTITUTION,
    ITEMS,
    LOCATION,
    LOGIN,
    PASSWORD,
    PIN,
)

__all__ = ["library_server"]  # the fixture, imported for pytest to find

SECURED_UID = "E004010000000011"
LOANED_UID = "E004010000000012"
# Long enough never to end inside a test: the line must still be up when checked.
HOLD_MS = 60_000
# Only a hang reaches this; events normally arrive within a few polls.
PATIENCE = 20


def tag(uid: str, item_id: str, afi: int) -> SimulatedTag:
    """A library tag holding an ISO 28560-3 basic block with this item id."""
    return SimulatedTag.with_data(
        uid, BasicBlock(item_id=item_id, country="DK", library="999999"), afi=afi
    )


@pytest.fixture
def gate_field() -> Iterator[ReaderSimulator]:
    """A simulated Feig reader in the gate, with an empty field, on loopback TCP."""
    with ReaderSimulator(TagField(), "feig") as simulator:
        simulator.serve_tcp()
        yield simulator


def gate_config(
    reader_port: str, target: LibraryServer | None, **reader: Any
) -> GateConfig:
    """The gate's configuration: fast polling, a relay on loop://, the test server."""
    data: dict[str, Any] = {
        "gate": {"name": "e2e", "poll_interval": 0.05, "report_interval": 0},
        "reader": {
            "driver": "feig",
            "port": reader_port,
            "timeout": 0.5,
            "reconnect_min": 0.1,
            "reconnect_max": 0.2,
            **reader,
        },
        "alarm": {"output": "serial", "port": "loop://", "hold_ms": HOLD_MS},
    }
    if target is not None:
        data["sip"] = {
            "host": target.host,
            "port": target.port,
            "login": LOGIN,
            "password": PASSWORD,
            "institution": INSTITUTION,
            "location": LOCATION,
            "timeout": 2.0,
        }
    return parse_gate_config(data, "<test>")


class Watch:
    """The gate's events as they come, and a way to wait for the next of a kind."""

    def __init__(self, running: RunningGate) -> None:
        self.events: list[GateEvent] = []
        self._waiting: list[
            tuple[Callable[[GateEvent], bool], defer.Deferred[Any]]
        ] = []
        running.gate.subscribe(self._seen)

    def _seen(self, event: GateEvent) -> None:
        self.events.append(event)
        for entry in list(self._waiting):
            matches, waiter = entry
            if matches(event):
                self._waiting.remove(entry)
                waiter.callback(event)

    def next(self, matches: Callable[[GateEvent], bool]) -> defer.Deferred[Any]:
        """Fire with the first event from now on that `matches`."""
        from twisted.internet import reactor  # noqa: PLC0415

        waiter: defer.Deferred[Any] = defer.Deferred()
        self._waiting.append((matches, waiter))
        return waiter.addTimeout(PATIENCE, reactor)


def is_pass(event: GateEvent) -> bool:
    """A tag went through the gate."""
    return isinstance(event, TagPassed)


def is_explained(event: GateEvent) -> bool:
    """The SIP2 lookup of an alarmed item finished."""
    return isinstance(event, ItemExplained)


async def run_gate(config: GateConfig) -> tuple[RunningGate, SerialRelay, Watch]:
    """Start the gate as `ils gate` does, keeping the relay to look at its line."""
    from twisted.internet import reactor  # noqa: PLC0415

    relay = open_serial_relay(config.alarm, reactor)
    running = start_gate(config, reactor, alarm=relay)
    return running, relay, Watch(running)


def check_out_and_unsecure(target: LibraryServer, item: str, pad: TagField) -> None:
    """What a kiosk does (blocking): check out over SIP2, then write AFI 0xC2."""
    with SipClient(target.host, target.port) as kiosk:
        kiosk.request(LoginRequest(login_user_id=LOGIN, login_password=PASSWORD))
        reply = kiosk.request(
            CheckoutRequest(
                sc_renewal_policy=False,
                no_block=False,
                transaction_date=datetime.now(),
                institution_id=INSTITUTION,
                patron_identifier=ADA,
                patron_password=PIN,
                item_identifier=item,
            )
        ).message
    assert isinstance(reply, CheckoutResponse)
    assert reply.ok

    with ReaderSimulator(pad, "feig") as kiosk_pad:
        port = serial.serial_for_url(kiosk_pad.serve_tcp(), timeout=1.0)
        try:
            reader = FeigReader(port)
            [uid] = reader.inventory()
            reader.write_afi(uid, 0xC2)
        finally:
            port.close()


@pytest_twisted.ensureDeferred
async def test_secured_item_alarms_and_staff_see_its_title(
    library_server: LibraryServer, gate_field: ReaderSimulator
) -> None:
    """An item on the shelf (AFI 0x07) raises the relay; then its title is logged."""
    running, relay, watch = await run_gate(gate_config(gate_field.url, library_server))
    try:
        gate_field.tags.put(tag(SECURED_UID, ITEMS[0], afi=0x07))
        passed: TagPassed = await watch.next(is_pass)
        line_at_alarm = relay.port.cts
        explained: ItemExplained = await watch.next(is_explained)
    finally:
        await running.stop()

    assert passed.verdict.alarm
    assert "secured (AFI 0x07)" == passed.verdict.reason
    assert ITEMS[0] == passed.tag.item_id
    assert line_at_alarm is True
    assert explained.facts is not None
    assert "Tide Tables, volume 01" == explained.facts.title
    assert CirculationStatus.AVAILABLE == explained.facts.status
    assert (1, 1) == (running.gate.counts.passes, running.gate.counts.alarms)


@pytest_twisted.ensureDeferred
async def test_checked_out_item_passes_silently(
    library_server: LibraryServer, gate_field: ReaderSimulator
) -> None:
    """An item checked out and unsecured at a kiosk goes through without an alarm."""
    book = tag(LOANED_UID, ITEMS[1], afi=0x07)
    await threads.deferToThread(
        check_out_and_unsecure, library_server, ITEMS[1], TagField([book])
    )
    running, relay, watch = await run_gate(gate_config(gate_field.url, library_server))
    try:
        gate_field.tags.put(book)
        passed: TagPassed = await watch.next(is_pass)
        line_after_pass = relay.port.cts
    finally:
        await running.stop()

    assert not passed.verdict.alarm
    assert "not secured (AFI 0xC2)" == passed.verdict.reason
    assert line_after_pass is False
    assert (1, 0) == (running.gate.counts.passes, running.gate.counts.alarms)
    assert [] == [e for e in watch.events if isinstance(e, ItemExplained)]


@pytest_twisted.ensureDeferred
async def test_secured_item_still_alarms_with_the_sip2_server_stopped(
    library_server: LibraryServer, gate_field: ReaderSimulator
) -> None:
    """With the SIP2 server gone the relay still rises; the lookup reports why."""
    running, relay, watch = await run_gate(gate_config(gate_field.url, library_server))
    try:
        await library_server.stop()
        gate_field.tags.put(tag(SECURED_UID, ITEMS[2], afi=0x07))
        passed: TagPassed = await watch.next(is_pass)
        line_at_alarm = relay.port.cts
        explained: ItemExplained = await watch.next(is_explained)
    finally:
        await running.stop()

    assert passed.verdict.alarm
    assert line_at_alarm is True
    assert explained.facts is None
    assert explained.problem


@pytest_twisted.ensureDeferred
async def test_3m_reader_over_a_pty_alarms_without_a_sip2_server() -> None:
    """A 3M 810 reader on a pty: secured alarms, on loan passes, no lookup asked."""
    field = TagField(
        [tag(SECURED_UID, ITEMS[0], afi=0x07), tag(LOANED_UID, ITEMS[1], afi=0xC2)]
    )
    with ReaderSimulator(field, "3m") as simulator:
        device = simulator.serve_pty()
        running, relay, watch = await run_gate(
            gate_config(device, None, driver="3m810")
        )
        try:
            first: TagPassed = await watch.next(is_pass)
            second: TagPassed = await watch.next(is_pass)
            line = relay.port.cts
        finally:
            await running.stop()

    verdicts = {e.tag.item_id: e.verdict.alarm for e in (first, second)}
    assert {ITEMS[0]: True, ITEMS[1]: False} == verdicts
    assert line is True
    assert (2, 1) == (running.gate.counts.passes, running.gate.counts.alarms)


@pytest_twisted.ensureDeferred
async def test_silent_reader_is_lost_and_comes_back(
    gate_field: ReaderSimulator,
) -> None:
    """A reader that stops answering is reported lost, then back, and still alarms."""
    running, _, watch = await run_gate(gate_config(gate_field.url, None, timeout=0.2))
    try:
        gate_field.silent = True
        lost: DeviceLost = await watch.next(lambda e: isinstance(e, DeviceLost))
        gate_field.silent = False
        await watch.next(lambda e: isinstance(e, DeviceBack))
        gate_field.tags.put(tag(SECURED_UID, ITEMS[0], afi=0x07))
        passed: TagPassed = await watch.next(is_pass)
    finally:
        await running.stop()

    assert "e2e" == lost.device
    assert passed.verdict.alarm


@pytest_twisted.ensureDeferred
async def test_thirty_secured_tags_in_a_feig_field_all_alarm(
    gate_field: ReaderSimulator,
) -> None:
    """More tags than one Feig inventory frame holds (24): every one alarms."""
    uids = [f"E0040100000001{n:02X}" for n in range(30)]
    for uid in uids:
        gate_field.tags.put(SimulatedTag(uid=uid, afi=0x07))
    running, _, watch = await run_gate(gate_config(gate_field.url, None))
    try:
        for _ in uids:
            await watch.next(is_pass)
    finally:
        await running.stop()

    assert sorted(uids) == sorted(e.tag.uid for e in watch.events if is_pass(e))
    assert 30 == running.gate.counts.alarms
    assert not [e for e in watch.events if isinstance(e, DeviceLost)]


@pytest.fixture
def simulator_process(tmp_path: Path) -> Iterator[str]:
    """`python -m drivers.rfid.simulator` with one secured tag; yields its URL."""
    tags = tmp_path / "tags.toml"
    tags.write_text(
        f'[[tags]]\nuid = "{SECURED_UID}"\nitem_id = "{ITEMS[0]}"\nafi = 0x07\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "drivers.rfid.simulator", "--tags", str(tags)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    try:
        assert first.startswith("feig reader on socket://"), first
        yield first.rsplit(" ", 1)[1].strip()
    finally:
        process.kill()
        process.communicate()


def test_ils_gate_command_alarms_counts_and_stops_on_sigterm(
    simulator_process: str, tmp_path: Path
) -> None:
    """`ils gate` runs the alarm command for a secured tag and logs counts on exit.

    The people counter is on `loop://`, whose CTS follows its own RTS and so
    never changes: nobody is counted.
    """
    record = tmp_path / "alarms.txt"
    siren = tmp_path / "siren"
    siren.write_text(f'#!/bin/sh\necho "$1" >> "{record}"\n')
    siren.chmod(0o755)
    config = tmp_path / "gate.toml"
    config.write_text(
        '[gate]\nname = "front"\npoll_interval = 0.05\nmask_item_ids = true\n'
        f'[reader]\ndriver = "feig"\nport = "{simulator_process}"\n'
        f'[alarm]\noutput = "command"\ncommand = ["{siren}", "front"]\n'
        '[people_counter]\nport = "loop://"\n'
    )
    gate = subprocess.Popen(
        [sys.executable, "-m", "ils.cli", "gate", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert gate.stdout is not None
    seen: list[str] = []
    try:
        for line in gate.stdout:
            seen.append(line)
            if "alarm command" in line or "ALARM" in line:
                break
        gate.send_signal(signal.SIGTERM)
        rest, _ = gate.communicate(timeout=PATIENCE)
    finally:
        if gate.poll() is None:
            gate.kill()
            gate.communicate()
    output = "".join(seen) + rest

    assert 0 == gate.returncode, output
    assert f"ALARM gate front: item **********{ITEMS[0][-4:]}" in output
    assert ITEMS[0] not in output
    assert (
        "gate front stopped; counts since start: 1 tag passes, 1 alarms, "
        "0 unreadable tags, 0 people"
    ) in output
    assert "Gate stopped." in output
    assert "front\n" == record.read_text()
