"""Where the server's log goes, as text or as JSON lines.

Layer: `sip2server`. Uses `twisted.logger` only.

The JSON form has one object per line: `time`, `level`, `namespace`, `text`
(the line as the text form writes it) and each named field of the event
(`conn`, `peer`, `login`, ...), so a log shipper can filter on them. Fields
are rendered with `str()`, which for a logged message is its redacted form,
and anything that is not a plain value is never written as itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)
from zope.interface import provider

_PLAIN = (str, int, float, bool, type(None))

# Characters a terminal may send that would corrupt or forge log lines in a
# terminal or a line-based reader: C0 (newlines included), DEL, C1, and the
# Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


# Characters of a terminal's own value (a login name, say) written to the log.
CLIPPED_LENGTH = 64


def clipped(value: object, limit: int = CLIPPED_LENGTH) -> str:
    """A terminal-supplied value cut for the log, saying how long it was.

    A peer may send 8,000-character login names; each refusal must not put
    them in the log whole (`"LLL...(8000 characters)"`).
    """
    text = "" if value is None else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text)} characters)"


class LineBudget:
    """Log lines of one kind per key (a peer's address), within a budget.

    In each `period` the first `detailed` lines per key are written in full;
    the rest are only counted, and when the period ends one summary line per
    key says how many were left out (`summarize(key, count, period)`). At most
    `max_keys` keys are tracked a period; lines for further keys are counted
    under `OTHER`. `call_later` is the reactor's.
    """

    OTHER = "other addresses"

    def __init__(
        self,
        call_later: Callable[..., Any],
        summarize: Callable[[str, int, float], None],
        *,
        detailed: int = 10,
        period: float = 60.0,
        max_keys: int = 10_000,
    ) -> None:
        self._call_later = call_later
        self._summarize = summarize
        self.detailed = detailed
        self.period = period
        self.max_keys = max_keys
        self._written: dict[str, int] = {}
        self._left_out: dict[str, int] = {}
        self._flush: Any = None

    def allow(self, key: str) -> bool:
        """Whether a line for `key` may be written now (else it is counted)."""
        if self._flush is None:
            self._flush = self._call_later(self.period, self.flush)
        if key not in self._written and len(self._written) >= self.max_keys:
            key = self.OTHER
        written = self._written.get(key, 0)
        if written < self.detailed and key != self.OTHER:
            self._written[key] = written + 1
            return True
        self._written.setdefault(key, written)
        self._left_out[key] = self._left_out.get(key, 0) + 1
        return False

    def flush(self) -> None:
        """End the period: one summary line per key with lines left out."""
        if self._flush is not None and self._flush.active():
            self._flush.cancel()
        self._flush = None
        left_out, self._left_out, self._written = self._left_out, {}, {}
        for key, count in left_out.items():
            self._summarize(key, count, self.period)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escaped_event(event: dict[str, Any]) -> dict[str, Any]:
    """The event with control characters in its fields written as escapes.

    Only the fields (the terminal's login, a peer, a message) are escaped;
    the format string and a failure's traceback are the server's own.
    """
    changed: dict[str, Any] = {}
    for key, value in event.items():
        if key.startswith("log_") or key == "format":
            continue
        if isinstance(value, (int, float, bool, type(None))):
            continue
        text = str(value)
        if _CONTROL.search(text):
            changed[key] = _CONTROL.sub(_escape, text)
    return {**event, **changed} if changed else event


def text_file_observer(stream: IO[str]) -> ILogObserver:
    """Twisted's text form, with control characters in fields escaped."""
    sink = textFileLogObserver(stream)

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        sink(escaped_event(event))

    return observe


def event_as_json(event: dict[str, Any]) -> str:
    """One log event as a JSON object on one line."""
    event = escaped_event(event)
    level = event.get("log_level")
    line: dict[str, Any] = {
        "time": datetime.fromtimestamp(event.get("log_time", 0), UTC).isoformat(
            timespec="milliseconds"
        ),
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace", ""),
        "text": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in line or key == "format":
            continue
        line[key] = value if isinstance(value, _PLAIN) else str(value)
    failure = event.get("log_failure")
    if failure is not None:
        line["traceback"] = failure.getTraceback()
    return json.dumps(line, ensure_ascii=False)


def json_file_observer(stream: IO[str]) -> ILogObserver:
    """An observer that writes each event to `stream` as a JSON line."""

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        stream.write(event_as_json(event) + "\n")
        stream.flush()

    return observe


def start_logging(stream: IO[str], *, level: str, form: str) -> None:
    """Send the global log to `stream` from `level` up, as `text` or `json`."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    sink = json_file_observer(stream) if form == "json" else text_file_observer(stream)
    observer = FilteringLogObserver(sink, [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
