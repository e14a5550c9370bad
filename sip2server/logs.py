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
