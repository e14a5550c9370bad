"""Errors of the SIP2 codec: who broke the protocol, and what the server should send.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

Two families, as in h11: a `RemoteProtocolError` means the peer sent something we
cannot use and carries the `Reply` a server should answer with; a
`LocalProtocolError` means our own side asked the codec to send something the
protocol cannot carry (a programming error, never the peer's fault).
"""

from __future__ import annotations

import enum

__all__ = [
    "ChecksumMismatch",
    "FrameTooLong",
    "InvalidFieldValue",
    "LocalProtocolError",
    "MalformedMessage",
    "ProtocolError",
    "RemoteProtocolError",
    "Reply",
    "UnexpectedTls",
    "UnknownCode",
    "UnknownCommand",
]


class Reply(enum.Enum):
    """What a server should send back when a request cannot be used as it is."""

    #: Send 96 (request SC resend): the frame was damaged or unusable.
    RESEND = "96"

    #: Send a well-formed negative response of the request's own type (ok=0,
    #: valid patron N, ...): the frame arrived intact but a value is invalid, so
    #: asking for the same frame again would loop.
    NEGATIVE = "negative"

    #: Close the connection: the peer is not speaking SIP2 at all.
    CLOSE = "close"


class ProtocolError(ValueError):
    """Base of every error the SIP2 codec raises."""


class LocalProtocolError(ProtocolError):
    """Our side asked the codec to encode something SIP2 cannot carry."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol.

    Attributes:
        reason: a human-readable sentence for the operator's log.
        reply: what the server should answer with.
        command: the two-character command of the offending frame, when known;
            with `Reply.NEGATIVE` it names the type of negative response to send.
    """

    default_reply: Reply = Reply.RESEND

    def __init__(
        self, reason: str, *, reply: Reply | None = None, command: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply if reply is not None else self.default_reply
        self.command = command


class ChecksumMismatch(RemoteProtocolError):  # noqa: N818 (names from the spec)
    """The AZ checksum does not match the bytes received: answer 96."""

    default_reply = Reply.RESEND


class UnknownCommand(RemoteProtocolError):  # noqa: N818 (names from the spec)
    """The frame starts with a command code SIP2 2.00 does not define: answer 96."""

    default_reply = Reply.RESEND


class MalformedMessage(RemoteProtocolError):  # noqa: N818 (names from the spec)
    """The frame is structurally broken (too short, a field without a code): 96."""

    default_reply = Reply.RESEND


class InvalidFieldValue(MalformedMessage):
    """One field of an intact frame holds a value it may not hold.

    The frame's structure was sound, so resending it would not help; the reply is
    a negative response of the request's own type.

    Attributes:
        field: the field's name (a two-letter code for variable fields, the
            attribute name for fixed ones).
        value: the offending text as received.
    """

    default_reply = Reply.NEGATIVE

    def __init__(
        self, reason: str, *, field: str, value: str, command: str | None = None
    ) -> None:
        super().__init__(reason, command=command)
        self.field = field
        self.value = value


class UnknownCode(InvalidFieldValue):
    """A coded field (an enumeration) holds a code the spec does not define."""


class FrameTooLong(RemoteProtocolError):  # noqa: N818 (names from the spec)
    """A frame ran past the framer's `max_length` before its terminator: answer 96."""

    default_reply = Reply.RESEND


class UnexpectedTls(RemoteProtocolError):  # noqa: N818 (names from the spec)
    """The peer opened a TLS handshake on a plain SIP2 port: close the connection."""

    default_reply = Reply.CLOSE
