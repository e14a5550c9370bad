"""The gate: poll the reader, alarm on secured items, explain alarms, count.

Layer: `drivers`. Imports the standard library, Twisted, `drivers.events`, the
RFID reader interface and the rest of `drivers.gate`; never `ils`.

Timing runs on a Twisted clock (the reactor, or a `Clock` in tests). Every call
that blocks on the reader runs through `run_on_reader` (one thread of its own in
production), and every SIP2 lookup through `run_lookup` (another), so the loop
never waits on hardware or on the network. The alarm sounds before the lookup is
even asked: a slow or stopped SIP2 server cannot delay or suppress it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import serial
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from drivers.events import DeviceBack, DeviceLost, TagSeen
from drivers.gate.alarm import AlarmOutput
from drivers.gate.config import GateConfig
from drivers.gate.lookup import STATUS_WORDS, ItemFacts
from drivers.gate.security import (
    GateReading,
    ReadingCutShort,
    TagDecoder,
    Verdict,
    decide,
    read_tag,
)
from drivers.rfid.reader import IncompleteInventory, RfidReader

_T = TypeVar("_T")
Runner = Callable[[Callable[[], _T]], "defer.Deferred[_T]"]
"""Runs a blocking call somewhere else (a thread) and returns its Deferred."""

_log = Logger(namespace="ils.gate")

_KEEP_LAST = 4


def mask_item_id(item_id: str) -> str:
    """An item barcode with all but its last four characters hidden."""
    if len(item_id) <= _KEEP_LAST:
        return "*" * len(item_id)
    return "*" * (len(item_id) - _KEEP_LAST) + item_id[-_KEEP_LAST:]


@dataclass(frozen=True, slots=True, kw_only=True)
class TagPassed:
    """A tag went through the gate; `verdict` says whether it alarmed and why."""

    gate: str
    tag: TagSeen
    verdict: Verdict
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemExplained:
    """What the SIP2 server said of an alarmed item, or why it could not be asked."""

    gate: str
    item_id: str
    facts: ItemFacts | None
    problem: str | None
    at: datetime


GateEvent = TagPassed | ItemExplained | DeviceLost | DeviceBack


@dataclass
class GateCounts:
    """What the gate has counted since it started.

    `passes` counts distinct tag passes: a tag that stays in the field counts
    once, and counts again only after it has been out of the field for the
    configured `pass_gap`. `people` is None without a people counter.
    """

    passes: int = 0
    alarms: int = 0
    unknown: int = 0
    people: int | None = None

    def line(self) -> str:
        """The counts in words, for the log."""
        people = "" if self.people is None else f", {self.people} people"
        return (
            f"{self.passes} tag passes, {self.alarms} alarms, "
            f"{self.unknown} unreadable tags{people}"
        )


PollResult = list[str]
"""The UIDs one inventory found; each new tag's reading was handed over as read."""


@dataclass
class _Backoff:
    first: float
    longest: float
    current: float = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.current * 2, self.longest)
        return delay

    def reset(self) -> None:
        self.current = self.first


class Gate:
    """One security gate: a reader, an alarm output and, optionally, a SIP2 lookup."""

    def __init__(
        self,
        config: GateConfig,
        *,
        open_reader: Callable[[], RfidReader],
        alarm: AlarmOutput,
        clock: Any,
        run_on_reader: Runner[Any],
        lookup: Callable[[str], ItemFacts] | None = None,
        run_lookup: Runner[Any] | None = None,
        decode_tag: TagDecoder | None = None,
        people: Callable[[], int] | None = None,
        from_reader: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        """Assemble a gate; nothing runs until `start`.

        `from_reader` hands a call from the reader's thread to the event loop
        (`reactor.callFromThread`), so each tag alarms as soon as it is read;
        without it the call is made at once (a reader run in place, in tests).
        """
        self.config = config
        self.name = config.gate.name
        self.counts = GateCounts()
        self._open_reader = open_reader
        self._alarm = alarm
        self._clock = clock
        self._run_on_reader = run_on_reader
        self._lookup = lookup
        self._run_lookup = run_lookup
        self._decode_tag = decode_tag
        self._people = people
        self._from_reader = from_reader or _call_now
        self._asked: dict[str, float] = {}
        self._listeners: list[Callable[[GateEvent], None]] = []
        self._reader: RfidReader | None = None
        self._present: dict[str, float] = {}
        self._lost: str | None = None
        self._backoff = _Backoff(
            config.reader.reconnect_min, config.reader.reconnect_max
        )
        self._next_poll: Any = None
        self._next_report: Any = None
        self._polling: defer.Deferred[None] | None = None
        self._lookups: set[defer.Deferred[None]] = set()
        self._running = False

    # -- what callers use ---------------------------------------------------------

    def subscribe(self, listener: Callable[[GateEvent], None]) -> None:
        """Call `listener` with every pass, alarm explanation and reader loss."""
        self._listeners.append(listener)

    def start(self) -> None:
        """Begin polling now, and report the counts every `report_interval`."""
        self._running = True
        _log.info(
            "gate {gate} started: reader {driver} on {port}, security by {mode}",
            gate=self.name,
            driver=self.config.reader.driver.value,
            port=self.config.reader.port,
            mode=self.config.security.mode.value.upper(),
        )
        self._next_poll = self._clock.callLater(0, self._poll)
        if self.config.gate.report_interval > 0:
            self._next_report = self._clock.callLater(
                self.config.gate.report_interval, self._report
            )

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """Stop polling, let the poll in hand finish, release everything, log counts."""
        self._running = False
        for call in (self._next_poll, self._next_report):
            if call is not None and call.active():
                call.cancel()
        if self._polling is not None:
            yield self._polling
        if self._lookups:
            # A lookup ends within its deadline; never wait on one past that.
            yield self._within(
                defer.DeferredList(list(self._lookups)), self._patience()
            )
        yield self._run_on_reader(self._close_reader)
        yield defer.maybeDeferred(self._alarm.close)
        self._update_people()
        _log.info(
            "gate {gate} stopped; counts since start: {counts}",
            gate=self.name,
            counts=self.counts.line(),
        )

    def _patience(self) -> float:
        sip = self.config.sip
        return 1.0 if sip is None else 2 * sip.timeout + 1.0

    def _within(self, waiting: defer.Deferred[Any], seconds: float) -> Any:
        # Fires when `waiting` does or after `seconds`, whichever is first;
        # `waiting` is left alone (a thread cannot be cancelled).
        done: defer.Deferred[None] = defer.Deferred()

        def finish(result: object) -> None:
            if not done.called:
                done.callback(None)

        def give_up() -> None:
            if not done.called:
                _log.warn(
                    "gate {gate}: stopping without waiting longer for an item "
                    "lookup ({seconds} s)",
                    gate=self.name,
                    seconds=seconds,
                )
                done.callback(None)

        timer = self._clock.callLater(seconds, give_up)
        waiting.addBoth(finish)
        done.addBoth(lambda result: timer.cancel() if timer.active() else None)
        return done

    # -- polling --------------------------------------------------------------------

    def _poll(self) -> None:
        self._next_poll = None
        if not self._running:
            return
        known = frozenset(self._present)
        polling = self._run_on_reader(partial(self._poll_blocking, known))
        self._polling = polling
        polling.addCallbacks(self._polled, self._poll_failed)
        polling.addErrback(self._poll_crashed)
        polling.addCallback(self._schedule)

    def _poll_blocking(self, known: frozenset[str]) -> PollResult:
        # Runs on the reader's thread: the only place the reader is touched.
        # Each reading goes to the loop as soon as it is made, so a secured tag
        # alarms at once, even if the reader fails on a later tag of the poll.
        if self._reader is None:
            self._reader = self._open_reader()
        reader = self._reader
        incomplete: IncompleteInventory | None = None
        try:
            uids = reader.inventory()
        except IncompleteInventory as error:
            uids, incomplete = error.uids, error
        for uid in dict.fromkeys(uids):
            if uid in known:
                continue
            try:
                reading = read_tag(
                    reader,
                    uid,
                    self.config.security,
                    decode_tag=self._decode_tag,
                    first_block=self.config.reader.first_block,
                    block_count=self.config.reader.block_count,
                )
            except ReadingCutShort as error:
                self._from_reader(partial(self._read_one, error.reading))
                raise
            self._from_reader(partial(self._read_one, reading))
        if incomplete is not None:
            raise incomplete
        return uids

    def _read_one(self, reading: GateReading) -> None:
        # On the loop: one new tag, read by the reader's thread a moment ago.
        now = self._clock.seconds()
        self._answering(now)
        self._present[reading.tag.uid] = now
        self._passed(reading, now)

    def _answering(self, now: float) -> None:
        if self._lost is not None:
            self._lost = None
            self._backoff.reset()
            _log.info("gate {gate}: reader answers again", gate=self.name)
            self._emit(DeviceBack(device=self.name, at=self._at(now)))

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        close = getattr(reader, "close", None)
        if close is None:
            return
        # It may be gone already; that is why it is being closed.
        with contextlib.suppress(OSError, serial.SerialException):
            close()

    def _polled(self, uids: PollResult) -> float:
        self._polling = None
        now = self._clock.seconds()
        self._answering(now)

        for uid in uids:
            self._present[uid] = now
        # A tag out of the field for longer than pass_gap passes anew next time.
        gap = self.config.gate.pass_gap
        for uid, seen in list(self._present.items()):
            if now - seen > gap:
                del self._present[uid]
        for item_id, asked in list(self._asked.items()):
            if now - asked > gap:
                del self._asked[item_id]
        return self.config.gate.poll_interval

    def _poll_failed(self, failure: Failure) -> float:
        self._polling = None
        problem = failure.value
        if not isinstance(problem, OSError | serial.SerialException):
            # Our own fault: log it whole, and keep the gate running.
            _log.failure("gate {gate}: polling failed", failure, gate=self.name)
        delay = self._backoff.next()
        reason = str(problem) or type(problem).__name__
        if self._lost is None:
            self._lost = reason
            _log.warn(
                "gate {gate}: reader lost ({reason}); retrying, at most every "
                "{longest} s",
                gate=self.name,
                reason=reason,
                longest=self.config.reader.reconnect_max,
            )
            self._emit(
                DeviceLost(
                    device=self.name, reason=reason, at=self._at(self._clock.seconds())
                )
            )
        closing = self._run_on_reader(self._close_reader)
        closing.addErrback(self._our_fault)
        return delay

    def _poll_crashed(self, failure: Failure) -> float:
        # A bug in handling a poll must not stop the gate: log it, poll again.
        self._polling = None
        self._our_fault(failure)
        return self.config.reader.reconnect_min

    def _schedule(self, delay: float) -> None:
        if self._running:
            self._next_poll = self._clock.callLater(delay, self._poll)

    # -- one tag through the gate -------------------------------------------------

    def _passed(self, reading: GateReading, now: float) -> None:
        verdict = decide(reading, self.config.security)
        self.counts.passes += 1
        if reading.tag.secured is None:
            self.counts.unknown += 1
        at = self._at(now)

        if not verdict.alarm:
            _log.debug(
                "gate {gate}: tag {uid} passed, {reason}",
                gate=self.name,
                uid=reading.tag.uid,
                reason=verdict.reason,
            )
            self._emit(
                TagPassed(gate=self.name, tag=reading.tag, verdict=verdict, at=at)
            )
            return

        # Alarm first: nothing below may delay or prevent it.
        self.counts.alarms += 1
        sounding = self._alarm.sound()
        sounding.addErrback(self._our_fault)
        item_id = reading.tag.item_id
        _log.warn(
            "ALARM gate {gate}: item {item} (tag {uid}) {reason}",
            gate=self.name,
            item=self._shown(item_id),
            uid=reading.tag.uid,
            reason=verdict.reason,
        )
        self._emit(TagPassed(gate=self.name, tag=reading.tag, verdict=verdict, at=at))

        # The parts of a set share one item id: ask about it once per pass.
        wanted = self._lookup is not None and item_id not in self._asked
        if item_id is not None and wanted:
            self._asked[item_id] = now
            self._explain(item_id)

    def _explain(self, item_id: str) -> None:
        assert self._lookup is not None
        run = self._run_lookup or _run_here
        asking = run(partial(self._lookup, item_id))
        asking.addCallbacks(
            partial(self._explained, item_id),
            partial(self._not_explained, item_id),
        )
        asking.addErrback(self._our_fault)
        self._lookups.add(asking)
        asking.addBoth(self._forget_lookup, asking)

    def _forget_lookup(self, result: object, asking: defer.Deferred[None]) -> None:
        self._lookups.discard(asking)

    def _explained(self, item_id: str, facts: ItemFacts) -> None:
        if not facts.known:
            _log.warn(
                "alarm gate {gate}: the library system does not know item {item}",
                gate=self.name,
                item=self._shown(item_id),
            )
        else:
            hint = "; the tag was not unsecured at checkout" if facts.on_loan else ""
            _log.warn(
                "alarm gate {gate}: item {item} is {title!r}, {status}{hint}",
                gate=self.name,
                item=self._shown(item_id),
                title=facts.title,
                status=STATUS_WORDS.get(facts.status, facts.status.value),
                hint=hint,
            )
        self._emit(
            ItemExplained(
                gate=self.name,
                item_id=item_id,
                facts=facts,
                problem=None,
                at=self._at(self._clock.seconds()),
            )
        )

    def _not_explained(self, item_id: str, failure: Failure) -> None:
        problem = failure.value
        if not isinstance(problem, OSError):
            _log.failure("gate {gate}: item lookup failed", failure, gate=self.name)
        _log.warn(
            "alarm gate {gate}: no title for item {item}; SIP2 server not "
            "available: {problem}",
            gate=self.name,
            item=self._shown(item_id),
            problem=str(problem),
        )
        self._emit(
            ItemExplained(
                gate=self.name,
                item_id=item_id,
                facts=None,
                problem=str(problem),
                at=self._at(self._clock.seconds()),
            )
        )

    # -- counts and small things -------------------------------------------------

    def _report(self) -> None:
        self._update_people()
        _log.info(
            "gate {gate} counts since start: {counts}",
            gate=self.name,
            counts=self.counts.line(),
        )
        if self._running:
            self._next_report = self._clock.callLater(
                self.config.gate.report_interval, self._report
            )

    def _update_people(self) -> None:
        if self._people is not None:
            self.counts.people = self._people()

    def _shown(self, item_id: str | None) -> str:
        if item_id is None:
            return "(id unreadable)"
        return mask_item_id(item_id) if self.config.gate.mask_item_ids else item_id

    @staticmethod
    def _at(seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, UTC)

    def _emit(self, event: GateEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a display must not stop the gate
                _log.failure("gate {gate}: a listener failed", gate=self.name)

    def _our_fault(self, failure: Failure) -> None:
        _log.failure("gate {gate}: unexpected error", failure, gate=self.name)


def _run_here(call: Callable[[], _T]) -> defer.Deferred[_T]:
    return defer.maybeDeferred(call)


def _call_now(call: Callable[[], None]) -> None:
    call()
