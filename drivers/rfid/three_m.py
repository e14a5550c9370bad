"""The 3M 810 serial protocol (3M/Bibliotheca staff and self-check pads).

Layer: `drivers`. Imports the standard library and `drivers.rfid`; the frame
functions at the top are sans-I/O, `ThreeM810Reader` drives a byte stream.
Never imports `ils` or `kiosk`.

The protocol is known from reverse engineering (Biblio-RFID's 3M810 driver and
its captures), not from a published manual. Frames, both directions:

    D6  LEN-HI LEN-LO  PAYLOAD...  CRC-HI CRC-LO

LEN is the payload length plus 2, and the CRC is CCITT-FALSE with a final XOR
of 0xFFFF over LEN and the payload, sent most significant byte first. A reply
payload starts with the command byte, then 00 for success or 06 for failure.
UIDs go most significant byte first (E0...). 19200 baud, 8N1.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from drivers.rfid.crc import crc16_3m
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
    NotSupportedByReader,
    ReaderError,
    ReaderTimeout,
    TagLeftField,
)

START = 0xD6
CMD_INVENTORY = 0xFE
CMD_READ_BLOCKS = 0x02
CMD_WRITE_BLOCKS = 0x04
CMD_WRITE_AFI = 0x09
CMD_READ_AFI = 0x0A
OK = 0x00
FAILED = 0x06
INVENTORY_REQUEST = bytes([CMD_INVENTORY, 0x00, 0x05])
INVENTORY_REPLY_HEAD = bytes([CMD_INVENTORY, 0x00, 0x00, 0x05])
MAX_INVENTORY = 255
"""Tags one inventory reply can list: its count is one byte."""
_MAX_SKIP = 64
# The longest frame: an inventory reply of MAX_INVENTORY UIDs, plus LEN's 2.
_MAX_LENGTH = len(INVENTORY_REPLY_HEAD) + 1 + 8 * MAX_INVENTORY + 2


def encode_frame(payload: bytes) -> bytes:
    """Return the frame carrying `payload` (requests and replies alike)."""
    body = (len(payload) + 2).to_bytes(2, "big") + payload
    return bytes([START]) + body + crc16_3m(body).to_bytes(2, "big")


def decode_frame(frame: bytes) -> bytes:
    """Return the payload of one whole frame.

    Raises:
        LinkFault: no start byte, a length that disagrees, or a bad CRC.
    """
    if len(frame) < 6 or frame[0] != START:
        raise LinkFault(f"malformed frame: {frame.hex(' ')}")
    length = int.from_bytes(frame[1:3], "big")
    if length != len(frame) - 3:
        raise LinkFault(f"frame length {length} disagrees: {frame.hex(' ')}")
    if int.from_bytes(frame[-2:], "big") != crc16_3m(frame[1:-2]):
        raise LinkFault(f"bad CRC in frame: {frame.hex(' ')}")
    return frame[3:-2]


def read_frame(stream: ByteStream, deadline: Deadline | None = None) -> bytes:
    """Read one frame from the stream, skipping noise before its start byte.

    Raises:
        LinkFault: nothing, only noise, a truncated frame, a bad CRC, or the
            `deadline` passed.
        ReaderError: the stream failed.
    """
    skipped = 0
    while True:
        first = read_exactly(stream, 1, "reply", deadline)
        if first[0] == START:
            break
        skipped += 1
        if skipped > _MAX_SKIP:
            raise LinkFault(f"no frame start among {skipped} bytes")
    head = read_exactly(stream, 2, "frame length", deadline)
    length = int.from_bytes(head, "big")
    if not 3 <= length <= _MAX_LENGTH:
        raise LinkFault(f"impossible frame length {length}")
    rest = read_exactly(stream, length, "frame", deadline)
    return decode_frame(first + head + rest)


def _uid_bytes(uid: str) -> bytes:
    try:
        raw = bytes.fromhex(uid)
    except ValueError:
        raw = b""
    if len(raw) != 8:
        raise ValueError(f"a UID is 16 hex digits, not {uid!r}")
    return raw


class ThreeM810Reader:
    """An `RfidReader` speaking the 3M 810 serial protocol over a byte stream.

    Blocking; not thread-safe. The reader's only error answer is `<cmd> 06`;
    after one the driver looks for the tag with an inventory (gone means
    TagLeftField) and otherwise tries again, up to `retries` times (weak
    coupling makes AFI writes fail often). Block writes always start at block
    0 in this protocol, so a write from a later block reads the blocks before
    it first; every write is read back to check it. One request, retries and
    all, takes at most `deadline` seconds.

    Late replies: every tag command's reply carries the tag's UID, and a reply
    about another tag is skipped as stale; after a request that needed a retry
    or timed out, the next first throws away whatever the reader still sends.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        retries: int = 5,
        block_size: int = 4,
        deadline: float = DEFAULT_DEADLINE,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._retries = retries
        self._block_size = block_size
        self._deadline = deadline
        self._now = now
        self._late = LateReplies(now)

    def transact(self, payload: bytes) -> bytes:
        """Send one request payload and return the reply payload.

        A tag command's reply (`<cmd> <status> <uid>...`) must name the UID of
        the request; others are skipped as stale.

        Raises:
            ReaderTimeout: the reader never answered, or not within `deadline`.
            ReaderError: unusable replies on every attempt, or a failed stream.
        """
        frame = encode_frame(payload)
        uid = None if payload == INVENTORY_REQUEST else payload[1:9]
        deadline = Deadline(self._deadline, self._now)
        self._late.settle(self._stream, deadline)
        faults: list[LinkFault] = []
        for _ in range(self._retries + 1):
            if deadline.passed:
                break
            # Anything already waiting is a late reply to an abandoned request.
            discard_pending(self._stream)
            send(self._stream, frame)
            self._late.sending()
            try:
                reply = self._matching_reply(payload[0], uid, deadline)
            except LinkFault as fault:
                faults.append(fault)
                continue
            self._late.answered()
            return reply
        self._late.unanswered()
        if any(fault.overdue for fault in faults) or deadline.passed:
            raise ReaderTimeout(
                f"the 3M reader did not finish answering command 0x{payload[0]:02X} "
                f"within {self._deadline:g} s" + (f" ({faults[-1]})" if faults else "")
            )
        if all(fault.silent for fault in faults):
            raise ReaderTimeout(
                f"the 3M reader did not answer command 0x{payload[0]:02X}"
            )
        raise ReaderError(
            f"no usable reply to command 0x{payload[0]:02X} after "
            f"{len(faults)} attempts: {faults[-1]}"
        )

    def _matching_reply(
        self, command: int, uid: bytes | None, deadline: Deadline
    ) -> bytes:
        for _ in range(4):
            reply = read_frame(self._stream, deadline)
            if reply and reply[0] == command and (uid is None or reply[2:10] == uid):
                return reply
        raise LinkFault(f"no reply to command 0x{command:02X} among the stale ones")

    def _tag_command(
        self, uid: str, payload: bytes, what: str, *, check: bytes | None = None
    ) -> bytes:
        # One budget of attempts covers both `<cmd> 06` answers (retried while
        # the tag is still in the field) and writes whose read-back differs.
        attempts = self._retries + 1
        for _ in range(attempts):
            reply = self.transact(payload)
            if len(reply) < 2 or reply[1] not in (OK, FAILED):
                raise ReaderError(f"unexpected reply to {what}: {reply.hex(' ')}")
            if reply[1] == FAILED:
                if uid not in self.inventory():
                    raise TagLeftField(f"tag {uid} left the field during {what}")
                continue
            if (
                check is None
                or self.read_blocks(uid, 0, len(check) // self._block_size) == check
            ):
                return reply[2:]
        problem = "failed" if check is None else "did not read back the same after"
        raise ReaderError(f"tag {uid} {problem} {what} {attempts} times")

    def inventory(self) -> list[str]:
        """Return the UIDs of the tags now in the field.

        Raises:
            ReaderError: the reader failed or did not answer.
        """
        reply = self.transact(INVENTORY_REQUEST)
        if not reply.startswith(INVENTORY_REPLY_HEAD) or len(reply) < 5:
            raise ReaderError(f"unexpected inventory reply: {reply.hex(' ')}")
        count, uids = reply[4], reply[5:]
        if len(uids) != count * 8:
            raise ReaderError(f"inventory reply has {len(uids)} bytes for {count} tags")
        return [uids[at : at + 8].hex().upper() for at in range(0, len(uids), 8)]

    def read_blocks(self, uid: str, first: int, count: int) -> bytes:
        """Return `count` blocks from block `first` of tag `uid`, joined.

        Raises:
            TagLeftField: the tag left the field.
            ReaderError: any other failure.
        """
        raw_uid = _uid_bytes(uid)
        body = self._tag_command(
            uid, bytes([CMD_READ_BLOCKS]) + raw_uid + bytes([first, count]), "a read"
        )
        size = self._block_size
        if body[:8] != raw_uid or len(body) < 9:
            raise ReaderError(f"read reply for another tag: {body.hex(' ')}")
        blocks, records = body[8], body[9:]
        if blocks != count or len(records) != blocks * (size + 2):
            raise ReaderError(
                f"read reply has {blocks} blocks in {len(records)} bytes, "
                f"asked for {count}"
            )
        data = bytearray()
        for index, at in enumerate(range(0, len(records), size + 2)):
            # Each block: its number, 2 bytes little-endian, then its data.
            number = int.from_bytes(records[at : at + 2], "little")
            if number != first + index:
                raise ReaderError(
                    f"read reply has block {number}, expected {first + index}"
                )
            data += records[at + 2 : at + 2 + size]
        return bytes(data)

    def write_blocks(self, uid: str, first: int, data: bytes) -> None:
        """Write whole blocks, from block `first`, to tag `uid`, and read them back.

        Raises:
            TagLeftField: the tag left the field; blocks may be partly written.
            ReaderError: any other failure, including a read-back mismatch.
        """
        size = self._block_size
        if not data or len(data) % size:
            raise ValueError(
                f"data must be whole {size}-byte blocks, not {len(data)} bytes"
            )
        if first:
            data = self.read_blocks(uid, 0, first) + data
        count = len(data) // size
        payload = (
            bytes([CMD_WRITE_BLOCKS])
            + _uid_bytes(uid)
            + bytes([0x00, count, 0x00])
            + data
        )
        try:
            self._tag_command(uid, payload, "a block write", check=data)
        except TagLeftField as error:
            raise TagLeftField(
                f"tag {uid} left the field during the write; blocks 0-{count - 1} "
                "may be partly written"
            ) from error

    def read_afi(self, uid: str) -> int:
        """Return the tag's AFI.

        Raises:
            TagLeftField: the tag left the field.
            ReaderError: any other failure.
        """
        body = self._tag_command(
            uid, bytes([CMD_READ_AFI]) + _uid_bytes(uid), "an AFI read"
        )
        if len(body) != 9:
            raise ReaderError(f"unexpected AFI reply: {body.hex(' ')}")
        return body[8]

    def write_afi(self, uid: str, afi: int) -> None:
        """Set the tag's AFI.

        Raises:
            TagLeftField: the tag left the field.
            ReaderError: any other failure.
        """
        raw_uid = _uid_bytes(uid)
        body = self._tag_command(
            uid, bytes([CMD_WRITE_AFI]) + raw_uid + bytes([afi]), "an AFI write"
        )
        if body[:8] != raw_uid:
            raise ReaderError(f"AFI write answered for another tag: {body.hex(' ')}")

    def read_eas(self, uid: str) -> bool:
        """Not available: the 3M 810 protocol as known has no EAS command.

        Raises:
            NotSupportedByReader: always; use AFI security with this reader.
        """
        raise NotSupportedByReader("the 3M 810 protocol has no EAS command; use AFI")

    def write_eas(self, uid: str, on: bool) -> None:
        """Not available: the 3M 810 protocol as known has no EAS command.

        Raises:
            NotSupportedByReader: always; use AFI security with this reader.
        """
        raise NotSupportedByReader("the 3M 810 protocol has no EAS command; use AFI")
