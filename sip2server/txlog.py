"""The transaction log: one line per circulation transaction, with masked ids.

Layer: `sip2server`. Standard library only (and the session's request names).

What an auditor or a library's systems staff need to answer "did this kiosk
check that item out at 10:02?" without the log becoming a reading history:
time, connection, terminal login, the terminal's address, command, outcome,
and the patron and item identifiers masked to their last four characters.
Names, PINs, titles and screen messages are never written.

Each line is a JSON object, so it can be shipped and parsed like the other
logs. The file is opened for appending and reopened by `reopen` (SIGHUP), so
logrotate can move it away.
"""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from twisted.logger import Logger

from sip2server.session import request_name

# The requests that change or pay something: the ones worth a line each.
TRANSACTIONS = frozenset(
    {
        "checkout",
        "checkin",
        "renew",
        "renew_all",
        "fee_paid",
        "hold",
        "block_patron",
        "patron_enable",
        "item_status_update",
    }
)

_KEEP_LAST = 4
_SHORTEST_PARTLY_SHOWN = 8

log = Logger(namespace="sip2server")


def mask_id(value: str | None) -> str | None:
    """An identifier with only its last four characters: `...0018`; short ones `***`."""
    if not value:
        return None
    if len(value) < _SHORTEST_PARTLY_SHOWN:
        return "***"
    return "..." + value[-_KEEP_LAST:]


class TransactionLog:
    """An append-only file of transaction lines."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._failed = False
        self._file: IO[str] = self._open()

    def _open(self) -> IO[str]:
        # No folder is made: a missing one is a mistake in the path (or a
        # mount not there), and a service may not create folders anyway.
        folder = self.path.parent
        if not folder.is_dir():
            raise FileNotFoundError(
                errno.ENOENT,
                f"{folder} is not an existing folder (the server creates "
                "none: make it, writable by the server's user)",
            )
        return self.path.open("a", encoding="utf-8", buffering=1)

    def record(
        self,
        *,
        conn: int,
        login: str | None,
        peer: str,
        request: Any,
        reply: Any,
        result: str,
    ) -> None:
        """Write one line if `request` is a circulation transaction."""
        command = request_name(request)
        if command not in TRANSACTIONS:
            return
        line = {
            "time": self._clock().isoformat(timespec="milliseconds"),
            "conn": conn,
            "terminal": login,
            "peer": peer,
            "command": command,
            "outcome": result,
            "patron": mask_id(getattr(request, "patron_identifier", None)),
            "item": mask_id(getattr(request, "item_identifier", None)),
        }
        alert = getattr(reply, "alert_type", None)
        if alert is not None:
            line["alert"] = getattr(alert, "value", str(alert))
        self._write(json.dumps(line, ensure_ascii=False) + "\n")

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                if self._file.closed:
                    # A reopen failed: try again, so the log resumes by itself.
                    self._file = self._open()
                self._file.write(text)
                self._failed = False
            except (OSError, ValueError) as error:
                if not self._failed:
                    # Once per outage of the disk, not once per transaction.
                    log.error(
                        "cannot write the transaction log {path}: {problem}",
                        path=str(self.path),
                        problem=str(error),
                    )
                self._failed = True

    def reopen(self) -> None:
        """Close and reopen the file (after logrotate moved it); never raises.

        Lines the old file could not take (a full disk) are lost, and said so;
        if the file cannot be opened again, that is logged and each later
        transaction tries again.
        """
        with self._lock:
            self._close_quietly()
            try:
                self._file = self._open()
                self._failed = False
            except OSError as error:
                log.error(
                    "cannot reopen the transaction log {path}: {problem}; "
                    "transactions are not logged until it can be opened",
                    path=str(self.path),
                    problem=str(error),
                )
                self._failed = True

    def close(self) -> None:
        """Close the file; never raises."""
        with self._lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        # Closing flushes: on a full disk that fails, and the file is closed
        # all the same. A reload or a shutdown must not stop there.
        try:
            self._file.close()
        except (OSError, ValueError) as error:
            log.warn(
                "closing the transaction log {path} lost unwritten lines: {problem}",
                path=str(self.path),
                problem=str(error),
            )
