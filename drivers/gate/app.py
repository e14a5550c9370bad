"""Assembling a running gate from its configuration.

Layer: `drivers`. Imports the standard library, Twisted, pyserial and the rest of
`drivers`; never `ils`. `ils gate` and the end-to-end tests both start the gate
through `start_gate`, so the tests run what operators run.

Threads: the reader has one thread of its own (a driver is not thread-safe and
blocks while it waits for the reader), and the SIP2 lookup another (its
connection is kept and used by one caller at a time). The event loop only
decides, sounds the alarm and logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from drivers.gate.alarm import AlarmOutput, build_alarm
from drivers.gate.config import GateConfig
from drivers.gate.gate import Gate, Runner
from drivers.gate.lookup import SipItemLookup, SipLookupError
from drivers.gate.people import ReopeningPeopleCounter
from drivers.gate.readers import decode_tag, reader_opener
from drivers.rfid.reader import RfidReader

_log = Logger(namespace="ils.gate")


class GateStartupError(RuntimeError):
    """The gate cannot start with this configuration; the message names the key."""


@dataclass
class RunningGate:
    """A started gate and the threads and ports it holds."""

    gate: Gate
    pools: list[ThreadPool] = field(default_factory=list)
    lookup: SipItemLookup | None = None
    people: ReopeningPeopleCounter | None = None

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Stop the gate, log its counts, and release threads and ports."""
        if self.people is not None:
            self.people.stop()
        yield self.gate.stop()
        if self.lookup is not None:
            self.lookup.close()
        for pool in self.pools:
            pool.stop()


def _pool(name: str) -> ThreadPool:
    pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
    pool.start()
    return pool


def _runner(reactor: Any, pool: ThreadPool) -> Runner[Any]:
    def run(call: Callable[[], Any]) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(reactor, pool, call)

    return run


def _check_login(lookup: SipItemLookup) -> None:
    # At start, so a wrong password shows in the log now, not at the first alarm.
    try:
        lookup.connect()
    except SipLookupError as problem:
        _log.warn(
            "gate: SIP2 server not usable yet ({problem}); alarms still sound, "
            "without titles",
            problem=str(problem),
        )
        return
    _log.info("gate: logged in to the SIP2 server")


def start_gate(
    config: GateConfig,
    reactor: Any,
    *,
    open_reader: Callable[[], RfidReader] | None = None,
    alarm: AlarmOutput | None = None,
) -> RunningGate:
    """Build and start a gate; the reader is opened by its thread, and retried.

    `open_reader` and `alarm` replace what the configuration names (tests).

    Raises:
        GateStartupError: the alarm command's program is not executable (ports
            that cannot be opened now, the reader's, the relay's and the people
            counter's, are retried instead).
    """
    try:
        output = alarm if alarm is not None else build_alarm(config.alarm, reactor)
    except OSError as problem:
        raise GateStartupError(str(problem)) from None

    # Like the reader and the relay, a people counter port is retried.
    people = None
    if config.people_counter is not None:
        people = ReopeningPeopleCounter(config.people_counter, reactor)

    reader_pool = _pool("gate-reader")
    pools = [reader_pool]
    lookup = None
    run_lookup = None
    if config.sip is not None:
        lookup_pool = _pool("gate-sip")
        pools.append(lookup_pool)
        lookup = SipItemLookup(config.sip)
        run_lookup = _runner(reactor, lookup_pool)
        run_lookup(partial(_check_login, lookup))

    gate = Gate(
        config,
        open_reader=open_reader or reader_opener(config.reader),
        alarm=output,
        clock=reactor,
        run_on_reader=_runner(reactor, reader_pool),
        lookup=None if lookup is None else lookup.lookup,
        run_lookup=run_lookup,
        decode_tag=decode_tag,
        people=None if people is None else (lambda: people.count),
        from_reader=reactor.callFromThread,
    )
    if people is not None:
        people.start()
    gate.start()
    return RunningGate(gate=gate, pools=pools, lookup=lookup, people=people)
