"""How one connection words its replies, and what each reply's outcome is named.

Layer: `sip2server`, part of the Twisted server (`sip2server.server`): the
terminator and error detection an account asks for (or the terminal's own),
the encoding a request came in, the 96 that asks for a resend, the key that
recognises a retransmitted request, and the outcome ("ok", "refused", ...)
that metrics and the transaction log record. `ReplyEncoding` is a base class
of `SipConnection`. Must not import `kiosk` or `drivers`.
"""

from __future__ import annotations

import codecs
import re
from typing import TYPE_CHECKING, Any

from sip2server.config import ErrorDetection, Terminator
from sip2server.protocol import (
    CheckinResponse,
    CheckoutResponse,
    Decoded,
    DelimiterPolicy,
    EndSessionResponse,
    FeePaidResponse,
    FieldOrder,
    Frame,
    Framer,
    HoldResponse,
    ItemStatusUpdateResponse,
    LoginResponse,
    PatronEnableResponse,
    PatronInformationResponse,
    PatronStatusResponse,
    RenewAllResponse,
    RenewResponse,
    RequestScResend,
    encode,
)

if TYPE_CHECKING:
    from sip2server.session import Reply, TerminalSession

# An error-detection trailer at the end of a frame: the terminal wants AZ in 96.
_TRAILER = re.compile(rb"(?:AY(\d))?AZ[0-9A-Fa-f]{1,4}\s*$")


def _trailer_of(payload: bytes) -> tuple[bool, int | None]:
    """Whether a frame that did not decode asked for AZ, and its AY digit."""
    match = _TRAILER.search(payload)
    if match is None:
        return False, None
    return True, None if match.group(1) is None else int(match.group(1))


class ReplyEncoding:
    """The part of `SipConnection` that encodes its replies and keys requests.

    A request whose key matches the last one is a retransmission, answered
    from memory. `SipConnection.__init__` sets the state below.
    """

    session: TerminalSession
    framer: Framer
    _peer_uses_crlf: bool

    @staticmethod
    def _request_key(decoded: Decoded, frame: Frame) -> tuple[int, str, bytes] | None:
        if decoded.sequence is None or decoded.checksum is None:
            return None
        # The bytes too: a 16-bit sum cannot tell two different requests apart
        # (two barcodes with their digits swapped have the same sum).
        return (decoded.sequence, decoded.checksum.upper(), frame.payload)

    def _terminator(self, frame: Frame) -> bytes:
        account = self.session.account
        choice = account.terminator if account else Terminator.MIRROR
        if choice is Terminator.CR:
            return b"\r"
        if choice is Terminator.CRLF:
            return b"\r\n"
        if frame.terminator == b"\r\n" or self.framer.terminator == b"\r\n":
            self._peer_uses_crlf = True
        if frame.terminator == b"\r" and self._peer_uses_crlf:
            # A CRLF whose LF comes in the next TCP segment ends the frame at CR;
            # a peer that has ever sent CRLF still waits for CRLF.
            return b"\r\n"
        return frame.terminator or b"\r"

    def _mode(self) -> ErrorDetection:
        account = self.session.account
        return account.error_detection if account else ErrorDetection.AUTO

    def _encode(
        self,
        message: Any,
        frame: Frame,
        decoded: Decoded | None,
        trailer: tuple[bool, int | None] = (False, None),
    ) -> bytes:
        """Encode a reply; `trailer` stands in for `decoded` when none was made."""
        account = self.session.account
        mode = self._mode()
        asked, sequence = (
            (decoded.error_detection, decoded.sequence) if decoded else trailer
        )
        if mode is ErrorDetection.OFF:
            error_detection = False
        elif mode is ErrorDetection.REQUIRED:
            error_detection = True
        else:
            error_detection = asked
        # Answer in the encoding the request was read in: a terminal that sent
        # Latin-1 to a UTF-8 account gets its own bytes back, not UTF-8 ones. An
        # ASCII account always gets (transliterated) ASCII.
        encoding = self.session.encoding
        if decoded is not None and codecs.lookup(encoding).name != "ascii":
            encoding = decoded.encoding
        return encode(
            message,
            sequence=sequence if error_detection else None,
            error_detection=error_detection,
            encoding=encoding,
            terminator=self._terminator(frame),
            delimiter_policy=(
                account.delimiter_in_value if account else DelimiterPolicy.SPACE
            ),
            field_order=account.field_order if account else FieldOrder.SPEC,
        )

    def _resend_request(self, frame: Frame) -> bytes:
        # 96 carries no sequence number; with error detection it carries AZ only.
        mode = self._mode()
        wants_checksum = mode is ErrorDetection.REQUIRED or (
            mode is ErrorDetection.AUTO and _TRAILER.search(frame.payload) is not None
        )
        return encode(
            RequestScResend(),
            error_detection=wants_checksum,
            encoding=self.session.encoding,
            terminator=self._terminator(frame),
        )


# Each reply's yes/no field that says whether the request was done: 12, 10,
# 16, 30, 66 and 94 name it `ok`, 38 `payment_accepted`, 20
# `item_properties_ok`, 36 `end_session`.
_OUTCOME_FIELDS: dict[type, str] = {
    CheckoutResponse: "ok",
    CheckinResponse: "ok",
    HoldResponse: "ok",
    RenewResponse: "ok",
    RenewAllResponse: "ok",
    LoginResponse: "ok",
    FeePaidResponse: "payment_accepted",
    ItemStatusUpdateResponse: "item_properties_ok",
    EndSessionResponse: "end_session",
}

# Replies about a patron (24 for 23 and 01, 26, 64): refused when the patron is
# unknown or the PIN given is wrong.
_PATRON_REPLIES = (
    PatronStatusResponse,
    PatronEnableResponse,
    PatronInformationResponse,
)


def _result_of(reply: Reply) -> str:
    """The outcome of one request as metrics and the transaction log name it.

    "unavailable" (database down), "unsupported" (answered 96), "refused" or
    "ok". 18 and 98 are always "ok": they report a state, they do nothing.
    """
    if reply.outage:
        return "unavailable"
    message = reply.message
    if message is None:
        return "unsupported"
    field = _OUTCOME_FIELDS.get(type(message))
    if field is not None:
        return "ok" if getattr(message, field) else "refused"
    if isinstance(message, _PATRON_REPLIES) and (
        message.valid_patron is False or message.valid_patron_password is False
    ):
        return "refused"
    return "ok"
