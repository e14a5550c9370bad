"""Counting people: a people counter's pulse output on a serial input line.

Layer: `drivers`. Imports the standard library, pyserial and Twisted; never
`ils`. Many gate pedestals carry a light-beam counter with a dry-contact or
open-collector output that closes once per person; wired to a serial port's
CTS, DSR, RI or CD input it reads as a line going high. Each low-to-high change
counts one person. Reading a modem-status line is a single ioctl, so sampling
runs on the event loop, every `poll_interval` (keep it shorter than a pulse).
"""

from __future__ import annotations

from typing import Any

import serial
from twisted.internet import task
from twisted.logger import Logger

from drivers.gate.config import InputLine, PeopleCounterSection

_log = Logger(namespace="ils.gate.people")


class PeopleCounter:
    """Counts rising edges of one serial input line, sampled on a clock."""

    def __init__(self, port: Any, line: InputLine, interval: float, clock: Any) -> None:
        self._port = port
        self._line = line
        self._interval = interval
        self._clock = clock
        self._high = False
        self._failing = False
        self._loop: task.LoopingCall | None = None
        self.count = 0

    def start(self) -> None:
        """Sample the line now and then every interval."""
        self._high = self._read() is True
        loop = task.LoopingCall(self.sample)
        loop.clock = self._clock
        loop.start(self._interval, now=False)
        self._loop = loop

    def _read(self) -> bool | None:
        try:
            value = bool(getattr(self._port, self._line.value))
        except (OSError, serial.SerialException) as problem:
            if not self._failing:
                self._failing = True
                _log.warn(
                    "people counter: cannot read {line} on {port}: {problem}",
                    line=self._line.value.upper(),
                    port=self._port.name,
                    problem=str(problem),
                )
            return None
        if self._failing:
            self._failing = False
            _log.info("people counter: {port} reads again", port=self._port.name)
        return value

    def sample(self) -> None:
        """Read the line once; a change from low to high counts one person."""
        value = self._read()
        if value is None:
            return
        if value and not self._high:
            self.count += 1
        self._high = value

    def stop(self) -> None:
        """Stop sampling and close the port."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._port.close()


def open_people_counter(section: PeopleCounterSection, clock: Any) -> PeopleCounter:
    """Open the counter's port (pyserial raises DTR and RTS, which can power it).

    Raises:
        OSError: the port cannot be opened; the message names the key.
    """
    try:
        port = serial.serial_for_url(section.port, do_not_open=True)
        port.open()
    except (OSError, serial.SerialException, ValueError) as problem:
        raise OSError(
            f"people_counter.port: cannot open {section.port}: {problem}"
        ) from None
    return PeopleCounter(port, section.line, section.poll_interval, clock)


class ReopeningPeopleCounter:
    """A people counter that does not give up on its port, as the gate does not
    give up on its reader: a port that cannot be opened at start is tried again
    after `first` seconds, doubling the wait up to `longest`. Until it opens,
    nobody is counted (and the log says why)."""

    def __init__(
        self,
        section: PeopleCounterSection,
        clock: Any,
        *,
        first: float = 1.0,
        longest: float = 30.0,
    ) -> None:
        self._section = section
        self._clock = clock
        self._wait = first
        self._longest = longest
        self._counter: PeopleCounter | None = None
        self._retry: Any = None

    @property
    def count(self) -> int:
        """People counted since the port opened."""
        return 0 if self._counter is None else self._counter.count

    @property
    def counter(self) -> PeopleCounter | None:
        """The open counter, or None while its port cannot be used."""
        return self._counter

    def start(self) -> None:
        """Open the port and start counting, or keep trying."""
        self._retry = None
        try:
            counter = open_people_counter(self._section, self._clock)
        except OSError as problem:
            _log.error(
                "{problem}; nobody is counted until it opens; trying again in {wait} s",
                problem=str(problem),
                wait=self._wait,
            )
            self._retry = self._clock.callLater(self._wait, self.start)
            self._wait = min(self._wait * 2, self._longest)
            return
        self._counter = counter
        counter.start()

    def stop(self) -> None:
        """Stop trying, stop sampling and close the port."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._counter is not None:
            self._counter.stop()
