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


def event_as_json(event: dict[str, Any]) -> str:
    """One log event as a JSON object on one line."""
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
    sink = json_file_observer(stream) if form == "json" else textFileLogObserver(stream)
    observer = FilteringLogObserver(sink, [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
