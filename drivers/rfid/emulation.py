"""Simulated tags and the reader side of each protocol, sans-I/O.

Layer: `drivers`. Imports the standard library and `drivers.rfid`; used by
`drivers.rfid.simulator` and by tests, never by production drivers.
Never imports `ils` or `kiosk`.

- `SimulatedTag` and `TagField`: ISO 15693 tags (UID, AFI, DSFID, EAS, blocks)
  that can be put in and taken out of the field while a driver is talking,
  including a tag that leaves in the middle of a write.
- `FeigEmulation` and `ThreeMEmulation`: bytes from the host in, reply frames
  out, as the real reader would answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from drivers.rfid import feig, three_m
from drivers.rfid.crc import crc16_3m, crc16_feig
from drivers.rfid.tags import BasicBlock, BlockOrder, encode_basic_block

BLOCK_SIZE = 4


@dataclass(eq=False, kw_only=True)
class SimulatedTag:
    """One ISO 15693 tag: its UID, AFI, DSFID, EAS bit and user memory.

    `eas` is None for a tag without NXP EAS. Change a tag only through its
    `TagField` while a simulator is running.
    """

    uid: str
    memory: bytearray = field(default_factory=lambda: bytearray(28 * BLOCK_SIZE))
    afi: int = 0x00
    dsfid: int = 0x00
    eas: bool | None = False
    leave_during_next_write: bool = False

    def __post_init__(self) -> None:
        try:
            raw = bytes.fromhex(self.uid)
        except ValueError:
            raw = b""
        if len(raw) != 8:
            raise ValueError(f"a UID is 16 hex digits, not {self.uid!r}")
        self.uid = raw.hex().upper()
        if len(self.memory) % BLOCK_SIZE:
            raise ValueError("tag memory must be whole 4-byte blocks")

    @classmethod
    def with_data(
        cls,
        uid: str,
        data: BasicBlock,
        *,
        afi: int = 0x07,
        eas: bool | None = False,
        order: BlockOrder = BlockOrder.NATURAL,
        size: int = 34,
        blocks: int = 28,
    ) -> SimulatedTag:
        """A tag holding an ISO 28560-3 basic block (DSFID 0x3E)."""
        memory = bytearray(blocks * BLOCK_SIZE)
        encoded = encode_basic_block(data, size=size, order=order)
        memory[: len(encoded)] = encoded
        return cls(uid=uid, memory=memory, afi=afi, dsfid=0x3E, eas=eas)

    @property
    def blocks(self) -> int:
        """How many 4-byte blocks of user memory the tag has."""
        return len(self.memory) // BLOCK_SIZE


class TagField:
    """The tags a simulated reader can see; safe to change from any thread."""

    def __init__(self, tags: Iterable[SimulatedTag] = ()) -> None:
        self._lock = threading.Lock()
        self._tags: dict[str, SimulatedTag] = {}
        for tag in tags:
            self.put(tag)

    def put(self, tag: SimulatedTag) -> None:
        """Bring a tag into the field (replacing one with the same UID)."""
        with self._lock:
            self._tags[tag.uid] = tag

    def take(self, uid: str) -> SimulatedTag | None:
        """Take a tag out of the field; return it, or None if it was not there."""
        with self._lock:
            return self._tags.pop(uid.upper(), None)

    def tag(self, uid: str) -> SimulatedTag | None:
        """The tag with this UID if it is in the field."""
        with self._lock:
            return self._tags.get(uid.upper())

    def uids(self) -> list[str]:
        """The UIDs in the field, in the order they arrived."""
        with self._lock:
            return list(self._tags)

    def leave_during_next_write(self, uid: str) -> None:
        """Make the tag leave the field after the first block of its next write."""
        with self._lock:
            self._tags[uid.upper()].leave_during_next_write = True

    def write(self, uid: str, first: int, data: bytes) -> bool:
        """Write blocks to a tag as the air link would; False if it left first.

        A tag marked to leave gets only its first block, then leaves.
        """
        with self._lock:
            tag = self._tags.get(uid)
            if tag is None:
                return False
            start = first * BLOCK_SIZE
            if tag.leave_during_next_write:
                tag.memory[start : start + BLOCK_SIZE] = data[:BLOCK_SIZE]
                tag.leave_during_next_write = False
                del self._tags[uid]
                return False
            tag.memory[start : start + len(data)] = data
            return True

    def update(self, uid: str, change: Callable[[SimulatedTag], None]) -> bool:
        """Apply `change` to a tag in the field under the lock; False if absent."""
        with self._lock:
            tag = self._tags.get(uid)
            if tag is None:
                return False
            change(tag)
            return True

    def snapshot(self, uid: str) -> SimulatedTag | None:
        """A copy of one tag's state, safe to read without the lock."""
        with self._lock:
            tag = self._tags.get(uid)
            if tag is None:
                return None
            return SimulatedTag(
                uid=tag.uid,
                memory=bytearray(tag.memory),
                afi=tag.afi,
                dsfid=tag.dsfid,
                eas=tag.eas,
            )


class Emulation(Protocol):
    """A reader's side of one protocol: request bytes in, reply frames out."""

    def receive(self, data: bytes) -> list[bytes]:
        """Take bytes from the host; return the reply frames now due."""
        ...


class FeigEmulation:
    """A Feig reader in ISO host mode, answering from a `TagField`.

    A request with a bad CRC is dropped unanswered, as is any byte that cannot
    start a frame, so the host times out and sends again. An inventory of more
    tags than one frame holds answers status 0x94 (more data) with the first
    `feig.RECORDS_PER_FRAME` records; the host asks for the rest with the MORE
    mode bit.
    """

    def __init__(self, tags: TagField) -> None:
        self._tags = tags
        self._buffer = bytearray()
        self._held_back: list[bytes] = []

    def receive(self, data: bytes) -> list[bytes]:
        """Take bytes from the host; return the reply frames now due."""
        self._buffer += data
        replies = []
        while self._buffer:
            length = self._buffer[0]
            if length < 5:
                del self._buffer[0]
                continue
            if len(self._buffer) < length:
                break
            frame = bytes(self._buffer[:length])
            del self._buffer[:length]
            if int.from_bytes(frame[-2:], "little") != crc16_feig(frame[:-2]):
                continue
            address, command, body = frame[1], frame[2], frame[3:-2]
            status, reply = self._answer(command, body)
            replies.append(feig.encode_reply(command, status, reply, address=address))
        return replies

    def _answer(self, command: int, body: bytes) -> tuple[int, bytes]:
        status = feig.FeigStatus
        if command == feig.CMD_ISO and len(body) >= 2:
            return self._iso(body[0], body[1], body[2:])
        if command == feig.CMD_CUSTOM and len(body) == 11 and body[0] == feig.NXP:
            return self._nxp(body[1], body[3:11].hex().upper())
        return status.UNKNOWN_COMMAND, b""

    def _iso(  # noqa: PLR0912 - one branch per ISO 15693 command
        self, iso_command: int, mode: int, rest: bytes
    ) -> tuple[int, bytes]:
        status = feig.FeigStatus
        if iso_command == feig.ISO_INVENTORY:
            return self._inventory(mode)
        if mode != feig.MODE_ADDRESSED or len(rest) < 8:
            return status.PARAMETER_RANGE_ERROR, b""
        uid, args = rest[:8].hex().upper(), rest[8:]
        tag = self._tags.snapshot(uid)
        if tag is None:
            return status.NO_TRANSPONDER, b""
        if iso_command == feig.ISO_READ_MULTIPLE and len(args) == 2:
            first, count = args
            if first + count > tag.blocks or count == 0:
                return status.TAG_ERROR, bytes([feig.ISO_ERROR_BLOCK_NOT_AVAILABLE])
            data = bytes([count, BLOCK_SIZE])
            for number in range(first, first + count):
                start = number * BLOCK_SIZE
                data += b"\x00" + tag.memory[start : start + BLOCK_SIZE]
            return status.OK, data
        if iso_command == feig.ISO_WRITE_MULTIPLE and len(args) >= 3:
            first, count, size = args[:3]
            data = args[3:]
            if size != BLOCK_SIZE or len(data) != count * size or count == 0:
                return status.LENGTH_ERROR, b""
            if first + count > tag.blocks:
                return status.TAG_ERROR, bytes([feig.ISO_ERROR_BLOCK_NOT_AVAILABLE])
            if not self._tags.write(uid, first, data):
                return status.NO_TRANSPONDER, b""
            return status.OK, b""
        if iso_command == feig.ISO_WRITE_AFI and len(args) == 1:
            afi = args[0]
            if not self._tags.update(uid, lambda tag: setattr(tag, "afi", afi)):
                return status.NO_TRANSPONDER, b""
            return status.OK, b""
        if iso_command == feig.ISO_SYSTEM_INFO and not args:
            memory = bytes([BLOCK_SIZE - 1, tag.blocks - 1])
            info = bytes([tag.dsfid]) + bytes.fromhex(tag.uid) + bytes([tag.afi])
            return status.OK, info + memory + b"\x01"
        return status.UNKNOWN_COMMAND, b""

    def _inventory(self, mode: int) -> tuple[int, bytes]:
        status = feig.FeigStatus
        if not mode & feig.MODE_MORE:
            self._held_back = []
            for uid in self._tags.uids():
                tag = self._tags.snapshot(uid)
                if tag is not None:
                    record = bytes([feig.TR_TYPE_ISO15693, tag.dsfid])
                    self._held_back.append(record + bytes.fromhex(tag.uid))
        if not self._held_back:
            return status.NO_TRANSPONDER, b""
        size = feig.RECORDS_PER_FRAME
        records, self._held_back = self._held_back[:size], self._held_back[size:]
        answer = status.MORE_DATA if self._held_back else status.OK
        return answer, bytes([len(records)]) + b"".join(records)

    def _nxp(self, nxp_command: int, uid: str) -> tuple[int, bytes]:
        status = feig.FeigStatus
        tag = self._tags.snapshot(uid)
        if tag is None:
            return status.NO_TRANSPONDER, b""
        if tag.eas is None:
            return status.TAG_ERROR, bytes([feig.ISO_ERROR_NOT_SUPPORTED])
        if nxp_command == feig.NXP_EAS_ALARM:
            return (status.OK, b"") if tag.eas else (status.NO_TRANSPONDER, b"")
        if nxp_command in (feig.NXP_SET_EAS, feig.NXP_RESET_EAS):
            on = nxp_command == feig.NXP_SET_EAS
            if not self._tags.update(uid, lambda tag: setattr(tag, "eas", on)):
                return status.NO_TRANSPONDER, b""
            return status.OK, b""
        return status.TAG_ERROR, bytes([feig.ISO_ERROR_NOT_SUPPORTED])


class ThreeMEmulation:
    """A 3M 810 reader, answering from a `TagField`.

    Bytes before a frame's start byte are skipped; a frame with a bad CRC is
    dropped unanswered. A failed tag command is answered `<cmd> 06 <uid>`.
    """

    def __init__(self, tags: TagField) -> None:
        self._tags = tags
        self._buffer = bytearray()

    def receive(self, data: bytes) -> list[bytes]:
        """Take bytes from the host; return the reply frames now due."""
        self._buffer += data
        replies = []
        while self._buffer:
            if self._buffer[0] != three_m.START:
                del self._buffer[0]
                continue
            if len(self._buffer) < 3:
                break
            length = int.from_bytes(self._buffer[1:3], "big")
            if length < 3:
                del self._buffer[0]
                continue
            if len(self._buffer) < 3 + length:
                break
            frame = bytes(self._buffer[: 3 + length])
            del self._buffer[: 3 + length]
            if int.from_bytes(frame[-2:], "big") != crc16_3m(frame[1:-2]):
                continue
            replies.append(three_m.encode_frame(self._answer(frame[3:-2])))
        return replies

    def _answer(self, payload: bytes) -> bytes:
        command = payload[0]
        if payload == three_m.INVENTORY_REQUEST:
            # One count byte: a field of more tags reports the first 255.
            uids = self._tags.uids()[: three_m.MAX_INVENTORY]
            joined = b"".join(bytes.fromhex(uid) for uid in uids)
            return three_m.INVENTORY_REPLY_HEAD + bytes([len(uids)]) + joined
        raw_uid = payload[1:9]
        uid = raw_uid.hex().upper()
        failed = bytes([command, three_m.FAILED]) + raw_uid
        tag = self._tags.snapshot(uid) if len(raw_uid) == 8 else None
        if tag is None:
            return failed
        args = payload[9:]
        ok = bytes([command, three_m.OK]) + raw_uid
        if command == three_m.CMD_READ_BLOCKS and len(args) == 2:
            first, count = args
            if count == 0 or first + count > tag.blocks:
                return failed
            records = b""
            for number in range(first, first + count):
                start = number * BLOCK_SIZE
                records += number.to_bytes(2, "little")
                records += tag.memory[start : start + BLOCK_SIZE]
            return ok + bytes([count]) + records
        if command == three_m.CMD_WRITE_BLOCKS and len(args) >= 3:
            count, data = args[1], args[3:]
            if len(data) != count * BLOCK_SIZE or count == 0 or count > tag.blocks:
                return failed
            if not self._tags.write(uid, 0, data):
                return failed
            return ok + bytes([count])
        if command == three_m.CMD_READ_AFI and not args:
            return ok + bytes([tag.afi])
        if command == three_m.CMD_WRITE_AFI and len(args) == 1:
            afi = args[0]
            if not self._tags.update(uid, lambda tag: setattr(tag, "afi", afi)):
                return failed
            return ok
        return failed
