"""The Feig "ISO host" protocol (OBID i-scan, ID CPR, MR101/102, LRU readers).

Layer: `drivers`. Imports the standard library and `drivers.rfid`; the frame
functions at the top are sans-I/O, `FeigReader` drives a byte stream.
Never imports `ils` or `kiosk`.

Standard frames, as in Feig's protocol manuals:

- request:  LEN COM-ADR CMD DATA... CRC-LSB CRC-MSB
- reply:    LEN COM-ADR CMD STATUS DATA... CRC-LSB CRC-MSB

LEN counts the whole frame, COM-ADR 0xFF is "any reader", and the CRC is the
reflected CCITT CRC (polynomial 0x8408, preset 0xFFFF) over LEN to the last
data byte. ISO 15693 commands travel inside CMD 0xB0 (`B0 <iso-cmd> <mode>
[UID] ...`, mode 0x01 = addressed to one UID), NXP custom commands (EAS) inside
CMD 0xB1. UIDs go most significant byte first.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.rfid.crc import crc16_feig
from drivers.rfid.link import (
    DEFAULT_DEADLINE,
    ByteStream,
    Deadline,
    LateReplies,
    LinkFault,
    discard_pending,
    read_exactly,
    send,
)
from drivers.rfid.reader import (
    IncompleteInventory,
    NotSupportedByTag,
    ReaderError,
    ReaderTimeout,
    TagLeftField,
)

BROADCAST = 0xFF
CMD_ISO = 0xB0
CMD_CUSTOM = 0xB1
ISO_INVENTORY = 0x01
ISO_READ_MULTIPLE = 0x23
ISO_WRITE_MULTIPLE = 0x24
ISO_WRITE_AFI = 0x27
ISO_SYSTEM_INFO = 0x2B
NXP = 0x04
NXP_SET_EAS = 0xA2
NXP_RESET_EAS = 0xA3
NXP_EAS_ALARM = 0xA5
MODE_ADDRESSED = 0x01
MODE_MORE = 0x80
"""Inventory mode bit: send the records a 0x94 (more data) reply held back."""
MAX_FOLLOW_UPS = 40
"""More-data follow-ups per inventory: 24 records a frame, so about 1000 tags."""
RECORDS_PER_FRAME = 24
"""Inventory records (10 bytes each) that fit one standard reply frame."""
TR_TYPE_ISO15693 = 0x03
_MIN_REPLY = 6
_MAX_FRAME = 255


class FeigStatus(enum.IntEnum):
    """The reader's status byte (Feig ISO host protocol)."""

    OK = 0x00
    NO_TRANSPONDER = 0x01
    DATA_FALSE = 0x02
    WRITE_ERROR = 0x03
    ADDRESS_ERROR = 0x04
    WRONG_TRANSPONDER_TYPE = 0x05
    EEPROM_FAILURE = 0x10
    PARAMETER_RANGE_ERROR = 0x11
    UNKNOWN_COMMAND = 0x80
    LENGTH_ERROR = 0x81
    COMMAND_NOT_AVAILABLE = 0x82
    RF_COMMUNICATION_ERROR = 0x83
    RF_WARNING = 0x84
    NO_VALID_DATA = 0x92
    DATA_BUFFER_OVERFLOW = 0x93
    MORE_DATA = 0x94
    TAG_ERROR = 0x95


# An ISO 15693 tag's own error code, sent after status 0x95.
ISO_ERROR_NOT_SUPPORTED = 0x01
ISO_ERROR_NOT_RECOGNISED = 0x02
ISO_ERROR_BLOCK_NOT_AVAILABLE = 0x10
ISO_ERROR_BLOCK_LOCKED = 0x12

# Worth asking again: the air link or the write was disturbed.
_RETRYABLE = frozenset(
    {FeigStatus.DATA_FALSE, FeigStatus.WRITE_ERROR, FeigStatus.RF_COMMUNICATION_ERROR}
)


@dataclass(frozen=True, slots=True)
class FeigReply:
    """One decoded reply frame."""

    address: int
    command: int
    status: int
    data: bytes


def encode_request(
    command: int, data: bytes = b"", *, address: int = BROADCAST
) -> bytes:
    """Return the standard request frame for `command` with `data`."""
    body = bytes([len(data) + 5, address, command]) + data
    return body + crc16_feig(body).to_bytes(2, "little")


def encode_reply(
    command: int, status: int, data: bytes = b"", *, address: int = BROADCAST
) -> bytes:
    """Return the reply frame a reader sends (used by the simulator and tests)."""
    body = bytes([len(data) + 6, address, command, status]) + data
    return body + crc16_feig(body).to_bytes(2, "little")


def decode_reply(frame: bytes) -> FeigReply:
    """Decode one whole reply frame.

    Raises:
        LinkFault: a length byte that disagrees with the frame, or a bad CRC.
    """
    if len(frame) < _MIN_REPLY or frame[0] != len(frame):
        raise LinkFault(f"malformed reply frame: {frame.hex(' ')}")
    stored = int.from_bytes(frame[-2:], "little")
    if stored != crc16_feig(frame[:-2]):
        raise LinkFault(f"bad CRC in reply: {frame.hex(' ')}")
    return FeigReply(frame[1], frame[2], frame[3], frame[4:-2])


def read_reply(stream: ByteStream, deadline: Deadline | None = None) -> FeigReply:
    """Read one reply frame from the stream.

    Raises:
        LinkFault: nothing, a truncated frame, an impossible length, a bad CRC,
            or the `deadline` passed.
        ReaderError: the stream failed.
    """
    head = read_exactly(stream, 1, "reply", deadline)
    if head[0] < _MIN_REPLY:
        raise LinkFault(f"impossible reply length byte 0x{head[0]:02X}")
    rest = read_exactly(stream, head[0] - 1, "reply frame", deadline)
    return decode_reply(head + rest)


def _uid_bytes(uid: str) -> bytes:
    try:
        raw = bytes.fromhex(uid)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise ValueError(f"a UID is 16 hex digits, not {uid!r}")
    return raw


def _status_name(status: int) -> str:
    try:
        return f"0x{status:02X} {FeigStatus(status).name.lower().replace('_', ' ')}"
    except ValueError:
        return f"0x{status:02X}"


class FeigReader:
    """An `RfidReader` speaking the Feig ISO host protocol over a byte stream.

    Blocking; not thread-safe (one caller at a time). Each request is sent
    again, up to `retries` more times, after no reply, a truncated reply, a bad
    CRC or a disturbed air link; other errors are raised at once. One request,
    retries and all, takes at most `deadline` seconds.

    Late replies: after a request that needed a retry or timed out, the next
    request first throws away whatever the reader still sends (see
    `LateReplies`), and a reply that carries a UID (system information) must
    carry the UID asked about, or it is skipped as stale.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        address: int = BROADCAST,
        retries: int = 2,
        block_size: int = 4,
        deadline: float = DEFAULT_DEADLINE,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._address = address
        self._retries = retries
        self._block_size = block_size
        self._deadline = deadline
        self._now = now
        self._late = LateReplies(now)

    def transact(
        self,
        command: int,
        data: bytes,
        *,
        accept: Callable[[FeigReply], bool] | None = None,
    ) -> FeigReply:
        """Send one request and return its reply, retrying within the limit.

        `accept` tells this request's reply from a stale one of the same
        command (for one, by the UID it carries); stale replies are skipped.

        Raises:
            ReaderTimeout: the reader never answered, or not within `deadline`.
            ReaderError: unusable replies on every attempt, or a failed stream.
        """
        frame = encode_request(command, data, address=self._address)
        deadline = Deadline(self._deadline, self._now)
        self._late.settle(self._stream, deadline)
        faults: list[LinkFault] = []
        reply: FeigReply | None = None
        for _ in range(self._retries + 1):
            if deadline.passed:
                break
            # Anything already waiting is a late reply to an abandoned request.
            discard_pending(self._stream)
            send(self._stream, frame)
            self._late.sending()
            try:
                reply = self._matching_reply(command, deadline, accept)
            except LinkFault as fault:
                faults.append(fault)
                continue
            if reply.status not in _RETRYABLE:
                break
        if reply is not None:
            self._late.answered()
            return reply
        self._late.unanswered()
        if any(fault.overdue for fault in faults) or deadline.passed:
            raise ReaderTimeout(
                f"the Feig reader did not finish answering command 0x{command:02X} "
                f"within {self._deadline:g} s" + (f" ({faults[-1]})" if faults else "")
            )
        if all(fault.silent for fault in faults):
            raise ReaderTimeout(
                f"the Feig reader did not answer command 0x{command:02X}"
            )
        raise ReaderError(
            f"no usable reply to command 0x{command:02X} after "
            f"{len(faults)} attempts: {faults[-1]}"
        )

    def _matching_reply(
        self,
        command: int,
        deadline: Deadline,
        accept: Callable[[FeigReply], bool] | None,
    ) -> FeigReply:
        # A late reply to an earlier, abandoned request is skipped.
        for _ in range(4):
            reply = read_reply(self._stream, deadline)
            if reply.command == command and (accept is None or accept(reply)):
                return reply
        raise LinkFault(f"no reply to command 0x{command:02X} among the stale ones")

    def _iso(
        self,
        uid: str | None,
        iso_command: int,
        tail: bytes = b"",
        *,
        accept: Callable[[FeigReply], bool] | None = None,
    ) -> FeigReply:
        mode = bytes([iso_command, MODE_ADDRESSED if uid else 0x00])
        address = _uid_bytes(uid) if uid else b""
        reply = self.transact(CMD_ISO, mode + address + tail, accept=accept)
        self._raise_for(reply, uid)
        return reply

    def _raise_for(self, reply: FeigReply, uid: str | None) -> None:
        status = reply.status
        if status == FeigStatus.OK:
            return
        if status == FeigStatus.NO_TRANSPONDER and uid:
            raise TagLeftField(
                f"tag {uid} did not answer (status 0x01, out of the field)"
            )
        if status == FeigStatus.WRONG_TRANSPONDER_TYPE:
            raise NotSupportedByTag(f"tag {uid} does not support this command")
        if status == FeigStatus.TAG_ERROR and reply.data:
            code = reply.data[0]
            if code in (ISO_ERROR_NOT_SUPPORTED, ISO_ERROR_NOT_RECOGNISED):
                raise NotSupportedByTag(
                    f"tag {uid} does not support this command (ISO error 0x{code:02X})"
                )
            raise ReaderError(f"tag {uid} answered ISO 15693 error 0x{code:02X}")
        raise ReaderError(f"the Feig reader answered status {_status_name(status)}")

    def inventory(self) -> list[str]:
        """Return the UIDs of the tags now in the field.

        A reply with status 0x94 (more data) holds only the records that fit
        one frame; the rest are asked for with the MORE mode bit, up to
        MAX_FOLLOW_UPS times.

        Raises:
            IncompleteInventory: a follow-up failed; it carries the UIDs read.
            ReaderError: the reader failed or did not answer.
        """
        uids: list[str] = []
        mode = 0x00
        for _ in range(MAX_FOLLOW_UPS + 1):
            try:
                reply = self.transact(CMD_ISO, bytes([ISO_INVENTORY, mode]))
                if reply.status == FeigStatus.NO_TRANSPONDER:
                    return uids
                if reply.status != FeigStatus.MORE_DATA:
                    self._raise_for(reply, None)
                # A reader that repeats itself must not make a tag count twice.
                uids += [
                    uid for uid in self._inventory_records(reply) if uid not in uids
                ]
            except ReaderError as error:
                if not uids:
                    raise
                raise IncompleteInventory(
                    f"inventory cut short after {len(uids)} tags: {error}", uids
                ) from error
            if reply.status != FeigStatus.MORE_DATA:
                return uids
            mode = MODE_MORE
        raise IncompleteInventory(
            f"more than {len(uids)} tags in the field; the rest were not asked for",
            uids,
        )

    @staticmethod
    def _inventory_records(reply: FeigReply) -> list[str]:
        if not reply.data:
            raise ReaderError("inventory reply without a record count")
        count, records = reply.data[0], reply.data[1:]
        if len(records) != count * 10:
            raise ReaderError(
                f"inventory reply has {len(records)} bytes for {count} records"
            )
        return [
            records[at + 2 : at + 10].hex().upper() for at in range(0, len(records), 10)
        ]

    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        """Return `count` blocks from block `first` of tag `uid`, joined.

        Raises:
            TagLeftField: the tag did not answer.
            ReaderError: any other failure.
        """
        # TODO(#7): a read reply carries no UID; a stale one later than the
        # LateReplies window, for the same blocks of another tag, would pass.
        reply = self._iso(uid, ISO_READ_MULTIPLE, bytes([first, count]))
        if len(reply.data) < 2:
            raise ReaderError("read reply without block count and size")
        blocks, size = reply.data[0], reply.data[1]
        body = reply.data[2:]
        if blocks != count or len(body) != blocks * (size + 1):
            raise ReaderError(
                f"read reply for {count} blocks holds {blocks} of {size} bytes "
                f"in {len(body)} bytes"
            )
        # Each block is preceded by its security status byte.
        return b"".join(
            body[at + 1 : at + 1 + size] for at in range(0, len(body), size + 1)
        )

    def write_blocks(self, uid: str, first: int, data: bytes) -> None:
        """Write whole blocks, from block `first`, to tag `uid`.

        Raises:
            TagLeftField: the tag stopped answering; blocks may be partly written.
            ReaderError: any other failure.
        """
        size = self._block_size
        if not data or len(data) % size:
            raise ValueError(
                f"data must be whole {size}-byte blocks, not {len(data)} bytes"
            )
        tail = bytes([first, len(data) // size, size]) + data
        try:
            self._iso(uid, ISO_WRITE_MULTIPLE, tail)
        except TagLeftField as error:
            raise TagLeftField(
                f"tag {uid} left the field during the write; blocks {first}-"
                f"{first + len(data) // size - 1} may be partly written"
            ) from error

    def read_afi(self, uid: str) -> int:
        """Return the tag's AFI, from its system information.

        Raises:
            TagLeftField: the tag did not answer.
            ReaderError: any other failure.
        """
        raw_uid = _uid_bytes(uid)

        def about_this_tag(reply: FeigReply) -> bool:
            # DSFID(1) UID(8) ...: a reply about another tag is a stale one.
            return reply.status != FeigStatus.OK or reply.data[1:9] == raw_uid

        reply = self._iso(uid, ISO_SYSTEM_INFO, accept=about_this_tag)
        # DSFID(1) UID(8) AFI(1) MEM-SIZE(2) IC-REF(1)
        if len(reply.data) < 10:
            raise ReaderError(f"short system information reply: {reply.data.hex(' ')}")
        return reply.data[9]

    def write_afi(self, uid: str, afi: int) -> None:
        """Set the tag's AFI (never locks it: ISO 28560-1 keeps AFI writable).

        Raises:
            TagLeftField: the tag did not answer.
            ReaderError: any other failure.
        """
        self._iso(uid, ISO_WRITE_AFI, bytes([afi]))

    def _nxp(self, uid: str, nxp_command: int) -> FeigReply:
        data = bytes([NXP, nxp_command, MODE_ADDRESSED]) + _uid_bytes(uid)
        return self.transact(CMD_CUSTOM, data)

    def read_eas(self, uid: str) -> bool:
        """Return whether the tag's NXP EAS bit is set.

        Only tags with EAS set answer the EAS alarm command, so silence is
        told apart from a tag that left by asking for its system information.

        Raises:
            NotSupportedByTag: the tag has no EAS.
            TagLeftField: the tag is gone.
            ReaderError: any other failure.
        """
        reply = self._nxp(uid, NXP_EAS_ALARM)
        if reply.status == FeigStatus.OK:
            return True
        if reply.status == FeigStatus.NO_TRANSPONDER:
            self._iso(uid, ISO_SYSTEM_INFO)
            return False
        self._raise_for(reply, uid)
        return True

    def write_eas(self, uid: str, on: bool) -> None:
        """Set or clear the tag's NXP EAS bit.

        Raises:
            NotSupportedByTag: the tag has no EAS.
            TagLeftField: the tag did not answer.
            ReaderError: any other failure.
        """
        # TODO(#7): tags with password-protected EAS need NXP B2-B4 first; not sent.
        reply = self._nxp(uid, NXP_SET_EAS if on else NXP_RESET_EAS)
        self._raise_for(reply, uid)
