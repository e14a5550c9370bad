"""`ils gate --check-devices`: whether the devices a gate configuration names can
be used now, as starting the gate would find them.

Layer: `drivers`. Imports the standard library, pyserial, Twisted's `Clock` and
the rest of `drivers.gate`; never `ils`. Opens each port briefly and closes it;
sends nothing to the reader and never raises an alarm line.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import serial
from twisted.internet.task import Clock

from drivers.gate.alarm import AlarmOutputError, command_alarm, open_serial_relay
from drivers.gate.config import AlarmKind, GateConfig
from drivers.gate.people import open_people_counter
from drivers.gate.readers import open_reader
from drivers.rfid.reader import ReaderError


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceProblem:
    """A device that cannot be used now; `retried` says whether the gate starts
    anyway and keeps trying it, or refuses to start."""

    key: str
    problem: str
    retried: bool

    def line(self) -> str:
        """The problem in words, with what the gate would do about it."""
        then = (
            "the gate starts anyway, logs alarms and keeps trying it"
            if self.retried
            else "the gate refuses to start"
        )
        return f"{self.key}: {self.problem} ({then})"


def check_devices(config: GateConfig) -> list[DeviceProblem]:
    """Open the reader's port, the alarm output and the people counter's port.

    Returns:
        One DeviceProblem per device that cannot be used now; none if all can.
    """
    problems = []
    try:
        reader = open_reader(config.reader)
    except ReaderError as error:
        problems.append(
            DeviceProblem(key="reader.port", problem=str(error), retried=True)
        )
    else:
        with contextlib.suppress(OSError, serial.SerialException):
            reader.close()

    alarm = config.alarm
    if alarm.output is AlarmKind.COMMAND:
        try:
            command_alarm(alarm, Clock())
        except AlarmOutputError as error:
            key, _, problem = str(error).partition(": ")
            problems.append(DeviceProblem(key=key, problem=problem, retried=False))
    elif alarm.output is AlarmKind.SERIAL:
        try:
            relay = open_serial_relay(alarm, Clock())
        except AlarmOutputError as error:
            key, _, problem = str(error).partition(": ")
            problems.append(DeviceProblem(key=key, problem=problem, retried=True))
        else:
            relay.close()

    if config.people_counter is not None:
        try:
            counter = open_people_counter(config.people_counter, Clock())
        except OSError as error:
            key, _, problem = str(error).partition(": ")
            problems.append(DeviceProblem(key=key, problem=problem, retried=True))
        else:
            counter.stop()
    return problems
