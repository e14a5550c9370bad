"""Alarm outputs: a relay on a serial port's DTR or RTS line, or a command.

Layer: `drivers`. Imports the standard library, pyserial and Twisted; never
`ils`. Both outputs run on the event loop without blocking it: a modem-control
line is one ioctl, and the command is started as a child process (an argv list,
no shell, no pipes, a session of its own) whose exit is checked on the clock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Protocol

import serial
from twisted.internet import defer
from twisted.logger import Logger

from drivers.gate.config import AlarmKind, AlarmSection, SerialLine

_log = Logger(namespace="ils.gate.alarm")


class AlarmOutputError(OSError):
    """The alarm output cannot be opened or driven; the message says which and why."""


class AlarmOutput(Protocol):
    """Something that makes the gate's alarm heard."""

    def sound(self) -> Any:
        """Start the alarm now; the Deferred returned fires when it has ended.

        It never fails: a broken output is logged, and the gate keeps counting.
        """
        ...

    def close(self) -> Any:
        """Release what the output holds; may return a Deferred to wait for."""
        ...


class SilentAlarm:
    """No output: alarms are only logged (a gate with its own sounder, or a test)."""

    def sound(self) -> Any:
        """Do nothing, at once."""
        return defer.succeed(None)

    def close(self) -> None:
        """Nothing to release."""


class SerialRelay:
    """A relay wired to a serial port's DTR or RTS line, held for a time per alarm.

    A second alarm while the line is held extends the hold instead of pulsing.
    """

    def __init__(
        self, port: Any, line: SerialLine, hold_seconds: float, clock: Any
    ) -> None:
        self._port = port
        self._line = line
        self._hold = hold_seconds
        self._clock = clock
        self._release_call: Any = None
        self._waiting: list[defer.Deferred[None]] = []
        #: Set when the line could not be raised or lowered (port unplugged).
        self.failed = False

    @property
    def port(self) -> Any:
        """The serial port whose line drives the relay."""
        return self._port

    @property
    def held(self) -> bool:
        """Whether the line is raised now."""
        return self._release_call is not None

    def _set(self, value: bool) -> None:
        setattr(self._port, self._line.value, value)

    def sound(self) -> Any:
        """Raise the line (or keep it raised) and lower it after the hold time."""
        if self._release_call is None:
            try:
                self._set(True)
            except (OSError, serial.SerialException) as problem:
                self.failed = True
                _log.error(
                    "alarm relay: cannot raise {line} on {port}: {problem}",
                    line=self._line.value.upper(),
                    port=self._port.name,
                    problem=str(problem),
                )
                return defer.succeed(None)
        else:
            self._release_call.cancel()
        self._release_call = self._clock.callLater(self._hold, self._release)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(waiter)
        return waiter

    def _release(self) -> None:
        self._release_call = None
        try:
            self._set(False)
        except (OSError, serial.SerialException) as problem:
            self.failed = True
            _log.error(
                "alarm relay: cannot lower {line} on {port}: {problem}",
                line=self._line.value.upper(),
                port=self._port.name,
                problem=str(problem),
            )
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)

    def close(self) -> None:
        """Lower the line if it is held, and close the port."""
        if self._release_call is not None:
            self._release_call.cancel()
            self._release()
        self._port.close()


class CommandAlarm:
    """A configured command run once per alarm, without a shell.

    While one run is still going, further alarms do not start another: the
    sounder is already on. The program gets no pipes (its standard streams are
    /dev/null) and a process group of its own, and its run ends when it exits,
    so a sound player it leaves in the background cannot hold up later alarms.
    A run that outlasts the timeout is killed with its whole group.
    """

    POLL_SECONDS = 0.05
    """How often a run is checked for having ended."""

    def __init__(self, argv: list[str], reactor: Any, timeout: float) -> None:
        self._argv = argv
        self._reactor = reactor
        self._timeout = timeout
        self._running: defer.Deferred[None] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._started = 0.0
        self._killed = False

    def sound(self) -> Any:
        """Start the command unless it is still running from a moment ago."""
        if self._running is not None:
            return self._running
        try:
            self._process = subprocess.Popen(  # noqa: S603 - argv from the config, no shell
                self._argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as problem:
            _log.error(
                "alarm command {command} could not start: {problem}",
                command=self._argv[0],
                problem=str(problem),
            )
            return defer.succeed(None)
        self._started = self._reactor.seconds()
        self._killed = False
        running: defer.Deferred[None] = defer.Deferred()
        self._running = running
        self._reactor.callLater(self.POLL_SECONDS, self._check)
        return running

    def _check(self) -> None:
        process = self._process
        if process is None:
            return
        code = process.poll()
        if code is None:
            if not self._killed and (
                self._reactor.seconds() - self._started >= self._timeout
            ):
                self._kill(process)
            self._reactor.callLater(self.POLL_SECONDS, self._check)
            return
        running, self._running, self._process = self._running, None, None
        if code != 0 and not self._killed:
            _log.warn(
                "alarm command {command} ended with status {code}",
                command=self._argv[0],
                code=code,
            )
        if running is not None:
            running.callback(None)

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        _log.warn(
            "alarm command {command} still running after {timeout} s; killing it",
            command=self._argv[0],
            timeout=self._timeout,
        )
        self._killed = True
        # Its own session: the group id is its pid, and holds what it started.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def close(self) -> Any:
        """Let a run still going finish (within its timeout); fire when it has."""
        if self._running is None:
            return defer.succeed(None)
        return self._running


class ReopeningRelay:
    """A serial relay that does not give up on its port.

    A port that cannot be opened (not plugged in yet, unplugged, busy) is tried
    again after `first` seconds, doubling the wait up to `longest`, as the gate
    does with its reader; meanwhile alarms are only logged (the gate's ALARM
    line still appears). A relay whose line stops working is closed and
    reopened the same way.
    """

    def __init__(
        self,
        section: AlarmSection,
        clock: Any,
        *,
        first: float = 1.0,
        longest: float = 30.0,
    ) -> None:
        self._section = section
        self._clock = clock
        self._first = first
        self._longest = longest
        self._wait = first
        self._relay: SerialRelay | None = None
        self._retry: Any = None
        self._open()

    @property
    def relay(self) -> SerialRelay | None:
        """The open relay, or None while its port cannot be used."""
        return self._relay

    def _open(self) -> None:
        self._retry = None
        try:
            self._relay = open_serial_relay(self._section, self._clock)
        except AlarmOutputError as problem:
            _log.error(
                "{problem}; alarms are only logged until it works; trying again "
                "in {wait} s",
                problem=str(problem),
                wait=self._wait,
            )
            self._retry_later()
            return
        self._wait = self._first
        _log.info("alarm relay on {port} ready", port=self._section.port)

    def _retry_later(self) -> None:
        self._retry = self._clock.callLater(self._wait, self._open)
        self._wait = min(self._wait * 2, self._longest)

    def sound(self) -> Any:
        """Raise the relay's line, or only log while the port cannot be used."""
        relay = self._relay
        if relay is None:
            return defer.succeed(None)
        sounding = relay.sound()
        if relay.failed:
            self._relay = None
            with contextlib.suppress(OSError, serial.SerialException):
                relay.close()
            self._retry_later()
        return sounding

    def close(self) -> None:
        """Stop trying, lower the line if it is held, and close the port."""
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._relay is not None:
            self._relay.close()
            self._relay = None


def open_serial_relay(section: AlarmSection, clock: Any) -> SerialRelay:
    """Open the relay's port with both control lines low, and check the line works.

    Raises:
        AlarmOutputError: the port cannot be opened or its line cannot be set
            (a pty, for one, has no modem-control lines).
    """
    assert section.port is not None  # the config checks this
    try:
        port = serial.serial_for_url(section.port, do_not_open=True)
        # pyserial raises DTR and RTS when it opens a port; the relay must not click.
        port.dtr = False
        port.rts = False
        port.open()
    except (OSError, serial.SerialException, ValueError) as problem:
        raise AlarmOutputError(
            f"alarm.port: cannot open {section.port}: {problem}"
        ) from None
    try:
        setattr(port, section.line.value, False)
    except (OSError, serial.SerialException) as problem:
        port.close()
        raise AlarmOutputError(
            f"alarm.port: {section.port} cannot drive its "
            f"{section.line.value.upper()} line: {problem}"
        ) from None
    return SerialRelay(port, section.line, section.hold_ms / 1000, clock)


def command_alarm(section: AlarmSection, reactor: Any) -> CommandAlarm:
    """A `CommandAlarm` for the configured argv, once its program is found.

    Raises:
        AlarmOutputError: the program is not an executable file.
    """
    program = section.command[0]
    found = shutil.which(program)
    if found is None or not Path(found).is_file():
        raise AlarmOutputError(
            f"alarm.command[0]: {program!r} is not an executable program"
        )
    return CommandAlarm([found, *section.command[1:]], reactor, section.command_timeout)


def build_alarm(section: AlarmSection, reactor: Any) -> AlarmOutput:
    """The alarm output the configuration asks for.

    A relay port that cannot be opened now is retried (see ReopeningRelay); a
    command whose program is missing is refused, since it cannot fix itself.

    Raises:
        AlarmOutputError: the alarm command's program is not executable.
    """
    if section.output is AlarmKind.SERIAL:
        return ReopeningRelay(section, reactor)
    if section.output is AlarmKind.COMMAND:
        return command_alarm(section, reactor)
    return SilentAlarm()
