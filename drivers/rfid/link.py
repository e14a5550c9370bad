"""The byte stream a reader driver talks over, and the reading it needs.

Layer: `drivers`. Imports only the standard library and `drivers.rfid.reader`.
Never imports `ils` or `kiosk`.

A stream is anything with pyserial's `read(n)` (returning at most `n` bytes,
fewer when its timeout passes) and `write(data)`: a `serial.Serial`, the object
`serial.serial_for_url("socket://...")` returns, or a pty opened by pyserial.
The stream's own timeout bounds every read, so a silent reader never hangs us;
a `Deadline` bounds a whole transaction, so a reader dribbling one byte just
inside that timeout cannot hold a caller for minutes either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from drivers.rfid.reader import ReaderError

DEFAULT_DEADLINE = 5.0
"""Seconds one request may take, retries and all, before it counts as a timeout."""


class ByteStream(Protocol):
    """The part of pyserial's `Serial` a reader driver uses."""

    def read(self, size: int = 1) -> bytes:
        """Return up to `size` bytes, fewer if the stream's timeout passes."""
        ...

    def write(self, data: bytes, /) -> int | None:
        """Send `data`."""
        ...


class LinkFault(Exception):  # noqa: N818 - internal, never raised to callers
    """A reply that could not be used: nothing, too short, or a bad CRC.

    Internal to the drivers, which retry and then raise a ReaderError.
    `silent` is true when the reader sent nothing at all.
    """

    def __init__(
        self, message: str, *, silent: bool = False, overdue: bool = False
    ) -> None:
        super().__init__(message)
        self.silent = silent
        self.overdue = overdue


class Deadline:
    """The moment a transaction must be over by, on a monotonic clock."""

    def __init__(
        self, seconds: float, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.seconds = seconds
        self._now = now
        self._end = now() + seconds

    @property
    def passed(self) -> bool:
        """Whether the time is up."""
        return self._now() >= self._end

    def now(self) -> float:
        """The clock's time now."""
        return self._now()

    def check(self, what: str) -> None:
        """Raise an overdue LinkFault if the time is up.

        Raises:
            LinkFault: (overdue) the deadline has passed.
        """
        if self.passed:
            raise LinkFault(
                f"{what} still incomplete after {self.seconds:g} s", overdue=True
            )


def read_exactly(
    stream: ByteStream, size: int, what: str, deadline: Deadline | None = None
) -> bytes:
    """Read `size` bytes or raise LinkFault naming `what` was cut short.

    Raises:
        LinkFault: the stream's timeout passed first, or the `deadline`.
        ReaderError: the stream itself failed (unplugged, connection closed).
    """
    data = b""
    while len(data) < size:
        if deadline is not None:
            deadline.check(what)
        try:
            chunk = stream.read(size - len(data))
        except ReaderError:
            raise
        except OSError as error:
            raise ReaderError(f"the reader's stream failed: {error}") from error
        if not chunk:
            if data:
                raise LinkFault(
                    f"truncated {what}: {len(data)} of {size} bytes ({data.hex(' ')})"
                )
            raise LinkFault(f"no {what} before the timeout", silent=True)
        data += chunk
    return data


def send(stream: ByteStream, frame: bytes) -> None:
    """Write one frame.

    Raises:
        ReaderError: the stream failed.
    """
    try:
        stream.write(frame)
    except OSError as error:
        raise ReaderError(f"the reader's stream failed: {error}") from error


def discard_pending(stream: ByteStream) -> None:
    """Throw away whatever the reader has sent but we have not read (resync)."""
    reset = getattr(stream, "reset_input_buffer", None)
    if reset is None:
        return
    try:
        reset()
    except OSError as error:
        raise ReaderError(f"the reader's stream failed: {error}") from error


def drain(stream: ByteStream, deadline: Deadline, until: float = 0.0) -> int:
    """Read and throw away bytes until the reader is quiet for one whole stream
    timeout that began at `until` or later (or until `deadline` passes): late
    replies to requests we gave up on.

    Returns:
        How many bytes were thrown away.

    Raises:
        ReaderError: the stream failed.
    """
    thrown = 0
    while not deadline.passed:
        started = deadline.now()
        try:
            chunk = stream.read(4096)
        except OSError as error:
            raise ReaderError(f"the reader's stream failed: {error}") from error
        # Quiet for a whole read that began no earlier than `until`.
        if not chunk and started >= until:
            break
        thrown += len(chunk)
    discard_pending(stream)
    return thrown


class LateReplies:
    """What a driver keeps between requests about replies still on their way.

    A request sent more than once (after a timeout or a bad reply) may be
    answered more than once, and a reply that came late once comes as late
    again: its duplicates arrive up to that lateness after the last sending.
    Before the next request `settle` reads and throws away what arrives until
    then, so no late reply is taken for the answer to another request.
    """

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._pending = False
        self._until = 0.0
        self._first: float | None = None
        self._last = 0.0
        self._sends = 0

    def sending(self) -> None:
        """Note that the request is being sent (again)."""
        self._last = self._now()
        if self._first is None:
            self._first = self._last
        self._sends += 1

    def answered(self) -> None:
        """The request got its answer; expect duplicates if it was sent again."""
        if self._sends > 1 and self._first is not None:
            lateness = self._now() - self._first
            self._pending = True
            self._until = max(self._until, self._last + lateness)
        self._first, self._sends = None, 0

    def unanswered(self) -> None:
        """The request was given up: whatever it still brings is stale."""
        self._pending = True
        self._until = max(self._until, self._last)
        self._first, self._sends = None, 0

    def settle(self, stream: ByteStream, deadline: Deadline) -> None:
        """Throw away late replies before a new request, if any are expected.

        Raises:
            ReaderError: the stream failed.
        """
        if self._pending:
            drain(stream, deadline, self._until)
            self._pending = False
