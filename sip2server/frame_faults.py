"""What a connection does when a frame is unusable or answering it fails.

Layer: `sip2server`, part of the Twisted server (`sip2server.server`): an
unusable frame is counted, logged in detail a few times per connection and
answered 96, and a peer that sends too many in a row is taken not to speak
SIP2 and cut off; a fault of our own while answering is logged in full and
answered 96 too, so the terminal is never left without a reply. `FrameFaults`
is a base class of `SipConnection`. Must not import `kiosk` or `drivers`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from twisted.logger import Logger
from twisted.python.failure import Failure

from sip2server.protocol import Frame, redact_frame
from sip2server.session import request_name

if TYPE_CHECKING:
    from sip2server.server import SipServerFactory, _Request

log = Logger(namespace="sip2server")

# Unusable frames in a row after which a peer is taken not to speak SIP2 and
# is disconnected, and how many of them are logged in detail.
MAX_PROTOCOL_ERRORS = 50
DETAILED_WARNINGS = 5

# Quoted text longer than this in an error's reason is cut before it is logged:
# it is the peer's own input, which may hold a password cut loose by a stray |.
_QUOTED = re.compile(r"'([^']{0,2})[^']{3,}'")


class FrameFaults:
    """The part of `SipConnection` that answers unusable frames and our faults.

    `SipConnection.__init__` sets the state below; the reply goes through the
    connection's `_resend_request` (`ReplyEncoding`), `_write` and `_close`
    (`FrameQueue`), and `_count` is the connection's.
    """

    factory: SipServerFactory
    connection_id: int
    peer: str
    _closed: bool
    _protocol_errors: int
    _warnings: int

    def _protocol_error(self, frame: Frame, reason: str) -> bytes:
        """Count and log one unusable frame; 96, or nothing once the peer is cut off."""
        self._protocol_errors += 1
        if self.factory.metrics is not None:
            self.factory.metrics.protocol_error()
        if self._may_warn():
            log.warn(
                "protocol error conn={conn} peer={peer}: {reason} frame={frame}",
                conn=self.connection_id,
                peer=self.peer,
                reason=_QUOTED.sub(r"'\1...'", reason),
                frame=redact_frame(frame.payload[:200]),
            )
        if self._protocol_errors >= MAX_PROTOCOL_ERRORS:
            log.warn(
                "{count} unusable frames in a row; closing conn={conn} peer={peer}",
                count=self._protocol_errors,
                conn=self.connection_id,
                peer=self.peer,
            )
            self._close()
            return b""
        return self._resend_request(frame)

    def _may_warn(self) -> bool:
        # A peer's misbehaviour is logged in detail a few times per connection;
        # after that only the closing is, so no peer can flood the log.
        self._warnings += 1
        return self._warnings <= DETAILED_WARNINGS

    def _fault(self, failure: Failure, request: _Request) -> None:
        # Our own fault, not the terminal's: log it in full and tell the
        # terminal to try again, which it can; never leave it without a reply.
        log.failure(
            "fault while answering conn={conn} command={command}",
            failure,
            conn=self.connection_id,
            command=type(request.decoded.message).__name__,
        )
        elapsed = self.factory.reactor.seconds() - request.started
        self._count(request_name(request.decoded.message), "error", elapsed)
        if self._closed:
            return
        try:
            reply = self._resend_request(request.frame)
        except Exception:  # the fault may be in encoding itself
            reply = b"96\r"
        self._write(reply)
