"""A connection's frames: framed a little at a time, queued, and paced.

Layer: `sip2server`, part of the Twisted server (`sip2server.server`). Bytes
are framed as the queue empties, frames are answered one at a time, and
reading stops while replies cannot be sent or too many requests wait.
`FrameQueue` is a base class of `SipConnection` and works on that connection's
state. Must not import `kiosk` or `drivers`.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from sip2server.protocol import Frame, Framer

if TYPE_CHECKING:
    from sip2server.server import SipServerFactory

log = Logger(namespace="sip2server")

# Frames waiting per connection before the server stops reading from it: a
# terminal that pipelines more than this is slowed down, not buffered forever.
MAX_QUEUED_FRAMES = 32

# Bytes handed to the framer at a time (see FrameQueue._fill_queue).
FRAMING_CHUNK = 1024

# Replies made on the spot (96, 97, 98, replays) before the reactor turns to the
# other connections: a flood of garbage from one peer must not starve the rest.
IMMEDIATE_REPLIES_PER_TURN = 32

# The queue of every connection with no frames waiting. An empty deque holds a
# block of 64 slots (about 700 bytes); an idle terminal needs none, so its
# connection shares this one, which can hold nothing, until frames arrive.
_NO_FRAMES: deque[Frame] = deque(maxlen=0)


class FrameQueue:
    """The part of `SipConnection` that frames, queues and paces its requests.

    `SipConnection.__init__` sets the state below. `_drain` asks the
    connection's `_immediate_reply` about each frame and hands a request that
    needs a worker thread to its `_dispatch`.
    """

    factory: SipServerFactory
    transport: Any
    connection_id: int
    framer: Framer
    _queue: deque[Frame]
    _unframed: bytearray
    _busy: bool
    _closed: bool
    _reading_paused: bool
    _output_blocked: bool
    _drain_later: Any
    _close_after_reply: bool

    def _fill_queue(self) -> None:
        # Bytes are framed a little at a time, as the queue empties: one read of
        # tiny pipelined frames would otherwise become thousands of queued objects.
        while self._unframed and len(self._queue) < MAX_QUEUED_FRAMES:
            chunk = bytes(self._unframed[:FRAMING_CHUNK])
            del self._unframed[:FRAMING_CHUNK]
            frames = self.framer.feed(chunk)
            if frames and self._queue is _NO_FRAMES:
                self._queue = deque()
            self._queue.extend(frames)

    # IPushProducer: the transport's outgoing buffer is full, or has room again.

    def pauseProducing(self) -> None:
        self._output_blocked = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._output_blocked = False
        self._drain()

    def stopProducing(self) -> None:
        self._close()

    def _drain(self) -> None:
        # Answers what can be answered on the spot, a limited number per turn,
        # and hands the first real request to a worker thread; the rest waits.
        if self._drain_later is not None and self._drain_later.active():
            self._drain_later.cancel()
        self._drain_later = None
        budget = IMMEDIATE_REPLIES_PER_TURN
        while not (self._busy or self._closed or self._output_blocked):
            if not self._queue:
                # Idle again: the connection's own queue goes (see _NO_FRAMES).
                self._queue = _NO_FRAMES
                self._fill_queue()
                if not self._queue:
                    break
            if budget == 0:
                self._drain_later = self.factory.reactor.callLater(0, self._drain)
                break
            frame = self._queue.popleft()
            try:
                request = self._immediate_reply(frame)
            except Exception:
                # Our own fault (no descriptor left, say): 96, as _fault sends,
                # and the connection stays for the terminal's retry.
                log.failure(
                    "fault while answering conn={conn}", conn=self.connection_id
                )
                try:
                    request = self._resend_request(frame)
                except Exception:  # the fault may be in encoding itself
                    request = b"96\r"
            if isinstance(request, bytes):
                self._write(request)
                if self._close_after_reply:
                    self._close()
                    break
                budget -= 1
                continue
            self._busy = True
            self._dispatch(request)
        self._update_reading()

    def _update_reading(self) -> None:
        # Stop reading while replies cannot be sent or too many requests wait.
        if self._closed:
            return
        backlog = len(self._queue) + len(self._unframed) // FRAMING_CHUNK
        if not self._reading_paused and (
            self._output_blocked or backlog >= MAX_QUEUED_FRAMES
        ):
            self._reading_paused = True
            self.transport.pauseProducing()
        elif (
            self._reading_paused
            and not self._output_blocked
            and backlog < MAX_QUEUED_FRAMES // 2
        ):
            self._reading_paused = False
            self.transport.resumeProducing()

    def _write(self, data: bytes) -> None:
        if data and not self._closed:
            self.transport.write(data)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self.transport.unregisterProducer()
        self.transport.loseConnection()
