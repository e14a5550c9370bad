"""What the kiosk and the gate use: tags in the field as `TagSeen` values.

Layer: `drivers`. Imports the standard library, `drivers.events` and
`drivers.rfid`; works on any `RfidReader` and never opens a stream itself.
Never imports `ils` or `kiosk`.

- `TagReader` reads a tag's ISO 28560-3 basic block and security state and
  turns them into `TagSeen` values; it also writes data and security.
- `FieldPoller` compares one inventory with the last and turns the difference
  into `TagsPresent`, `TagsGone`, `DeviceLost` and `DeviceBack` events.

Both block; callers on the event loop run them in a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from drivers.events import (
    DeviceBack,
    DeviceEvent,
    DeviceLost,
    TagSeen,
    TagsGone,
    TagsPresent,
)
from drivers.rfid.reader import (
    NotSupportedByReader,
    NotSupportedByTag,
    ReaderError,
    RfidReader,
    TagLeftField,
)
from drivers.rfid.security import SecurityPolicy
from drivers.rfid.tags import (
    BLOCK_SIZE,
    BasicBlock,
    BlockOrder,
    TagDataError,
    decode_basic_block,
    encode_basic_block,
)

DATA_BLOCKS = 9
"""Blocks holding the 34-byte basic block (the last one half used)."""

SHORT_DATA_BLOCKS = 8
"""Blocks holding the 32-byte basic block of small tags."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TagReader:
    """Tags' ISO 28560-3 data and security through one reader.

    `reader` may be replaced (after reopening a port); not thread-safe.
    """

    def __init__(
        self, reader: RfidReader, *, security: SecurityPolicy | None = None
    ) -> None:
        self.reader = reader
        self.security = security if security is not None else SecurityPolicy()

    def inventory(self) -> list[str]:
        """The UIDs in the field.

        Raises:
            ReaderError: the reader failed or did not answer.
        """
        return self.reader.inventory()

    def read_data(self, uid: str) -> tuple[BasicBlock, BlockOrder]:
        """The tag's basic block and the block order it was found in.

        Reads 9 blocks, or 8 from a tag too small for 9.

        Raises:
            TagDataError: the blocks hold no valid basic block (or a blank tag).
            TagLeftField: the tag left the field.
            ReaderError: any other reader failure.
        """
        try:
            memory = self.reader.read_blocks(uid, 0, DATA_BLOCKS)
        except TagLeftField:
            raise
        except ReaderError:
            memory = self.reader.read_blocks(uid, 0, SHORT_DATA_BLOCKS)
        return decode_basic_block(memory)

    def write_data(
        self,
        uid: str,
        block: BasicBlock,
        *,
        order: BlockOrder = BlockOrder.NATURAL,
        size: int = 34,
    ) -> None:
        """Write a basic block to the tag, as whole blocks from block 0.

        Keep the order `read_data` found when rewriting a tag in use.

        Raises:
            TagDataError: `block` does not fit `size`.
            TagLeftField: the tag left the field; it may be partly written.
            ReaderError: any other reader failure.
        """
        encoded = encode_basic_block(block, size=size, order=order)
        encoded += bytes(-len(encoded) % BLOCK_SIZE)
        self.reader.write_blocks(uid, 0, encoded)

    def is_secured(self, uid: str) -> bool:
        """Whether a gate should alarm for this tag, by the site's policy."""
        return self.security.is_secured(self.reader, uid)

    def secure(self, uid: str) -> None:
        """Secure the tag (checkin), by the site's policy, and check it."""
        self.security.secure(self.reader, uid)

    def unsecure(self, uid: str) -> None:
        """Unsecure the tag (checkout), by the site's policy, and check it."""
        self.security.unsecure(self.reader, uid)

    def read_tag(self, uid: str) -> TagSeen:
        """What can be read of one tag.

        Data that cannot be read or decoded gives `item_id=None`; a security
        state that cannot be read (or a tag or reader without EAS) gives
        `secured=None`.

        Raises:
            TagLeftField: the tag left the field while being read.
        """
        seen = TagSeen(uid=uid)
        try:
            block, _ = self.read_data(uid)
        except TagLeftField:
            raise
        except (TagDataError, ReaderError):
            pass
        else:
            seen = TagSeen(
                uid=uid,
                item_id=block.item_id,
                owner_library=block.owner_library,
                part=block.part,
                parts=block.parts,
            )

        try:
            secured: bool | None = self.is_secured(uid)
        except TagLeftField:
            raise
        except (NotSupportedByTag, NotSupportedByReader, ReaderError):
            secured = None
        return TagSeen(
            uid=seen.uid,
            item_id=seen.item_id,
            owner_library=seen.owner_library,
            part=seen.part,
            parts=seen.parts,
            secured=secured,
        )

    def scan(self) -> list[TagSeen]:
        """Every tag in the field, read; tags that leave while read are left out.

        Raises:
            ReaderError: the inventory failed.
        """
        seen = []
        for uid in self.inventory():
            try:
                seen.append(self.read_tag(uid))
            except TagLeftField:
                continue
        return seen


class FieldPoller:
    """Turns successive inventories into arrival, departure and device events.

    Call `poll()` on a schedule, or `run()` in a thread. A tag is read once,
    when it arrives; tags that leave while being read are tried again on the
    next poll. When the reader fails, one `DeviceLost` is emitted and the
    tags are still counted as present; the first good inventory after that
    emits `DeviceBack` and then whatever changed meanwhile. If `reopen` is
    given, each poll while lost first calls it for a fresh reader (a port
    that was unplugged must be opened again).
    """

    def __init__(
        self,
        tags: TagReader,
        *,
        device: str,
        now: Callable[[], datetime] = _utc_now,
        reopen: Callable[[], RfidReader] | None = None,
    ) -> None:
        self._tags = tags
        self._device = device
        self._now = now
        self._reopen = reopen
        self._present: dict[str, TagSeen] = {}
        self._lost = False

    @property
    def present(self) -> dict[str, TagSeen]:
        """The tags now counted as in the field, by UID."""
        return dict(self._present)

    @property
    def lost(self) -> bool:
        """Whether the reader is failing."""
        return self._lost

    def poll(self) -> list[DeviceEvent]:
        """Take one inventory; return the events it gives, in order."""
        if self._lost and self._reopen is not None:
            try:
                self._tags.reader = self._reopen()
            except OSError:
                return []
        try:
            uids = self._tags.inventory()
        except ReaderError as error:
            if self._lost:
                return []
            self._lost = True
            return [DeviceLost(device=self._device, reason=str(error), at=self._now())]

        events: list[DeviceEvent] = []
        if self._lost:
            self._lost = False
            events.append(DeviceBack(device=self._device, at=self._now()))

        gone = tuple(uid for uid in self._present if uid not in uids)
        for uid in gone:
            del self._present[uid]
        if gone:
            events.append(TagsGone(device=self._device, uids=gone, at=self._now()))

        arrived = []
        for uid in uids:
            if uid in self._present:
                continue
            try:
                seen = self._tags.read_tag(uid)
            except TagLeftField:
                continue
            self._present[uid] = seen
            arrived.append(seen)
        if arrived:
            events.append(
                TagsPresent(device=self._device, tags=tuple(arrived), at=self._now())
            )
        return events

    def run(
        self,
        emit: Callable[[DeviceEvent], None],
        *,
        stop: threading.Event,
        interval: float = 0.2,
    ) -> None:
        """Poll every `interval` seconds until `stop` is set, emitting events."""
        while not stop.is_set():
            for event in self.poll():
                emit(event)
            stop.wait(interval)
