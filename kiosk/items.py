"""The item loop and the RFID pad: items scanned or placed, one by one.

Layer: `kiosk` view model, a part of `SelfCheck` (kiosk/session.py). No Kivy
and never `ils`; it must not import `kiosk.session` (the session imports it).
"""

from __future__ import annotations

from dataclasses import replace

from twisted.internet import defer
from twisted.logger import Logger

from .devices import PadTag
from .model import Cue, Screen
from .transactions import Action, ItemOutcome, Patron, Result
from .wording import Refusal

# The same namespace as before the split, so log filters keep matching.
log = Logger(namespace="kiosk.session")


class ItemLoop:
    """Items scanned or on the RFID pad, mixed into `SelfCheck`."""

    # -- the RFID pad ------------------------------------------------------------

    async def tags_placed(self, tags: list[PadTag]) -> None:
        """Tags arrived on the RFID pad: a card to identify, or items."""
        for tag in tags:
            self.pad[tag.uid] = tag
        self.touch()
        fresh = [tag for tag in tags if tag.uid not in self.pad_left]
        if not fresh:
            return
        readable = [tag for tag in fresh if tag.item_id]
        if not readable:
            self._refuse(Refusal.SCAN_UNREADABLE)
            return
        first = readable[0].item_id or ""
        if self.screen is Screen.IDENTIFY:
            # An RFID library card: the same as scanning its barcode. Items put
            # on the pad at the card prompt (a common order) wait for the item
            # loop; they are neither a card nor a staff code.
            cards = [
                tag.item_id
                for tag in readable
                if tag.item_id and not self._looks_like_item(tag.item_id)
            ]
            if cards:
                await self.scan(cards[0])
            else:
                self._changed()
            return
        if self.screen is Screen.ATTRACT and not self._looks_like_item(first):
            await self.scan(first)
            return
        # Items on the pad at the welcome screen wait for the patron's choice
        # (return, or start to borrow or renew them): never returned by themselves.
        if self.screen is Screen.ITEMS:
            await self._pad_items()
        else:
            self._changed()

    def tags_found_at_start(self, tags: list[PadTag]) -> None:
        """Tags already on the pad when the kiosk started: ignored until lifted."""
        for tag in tags:
            self.pad[tag.uid] = tag
            self.pad_left.add(tag.uid)

    def _items_on_pad(self) -> None:
        # Items put on the pad before the patron chose what to do with them.
        if any(tag.item_id for tag in self._pad_now()):
            self.run(self._pad_items())

    def _pad_now(self) -> list[PadTag]:
        """The tags on the pad that belong to this session."""
        return [tag for tag in self.pad.values() if tag.uid not in self.pad_left]

    def tags_lifted(self, uids: list[str]) -> None:
        """Tags left the pad."""
        for uid in uids:
            self.pad.pop(uid, None)
            self.pad_left.discard(uid)

    async def _pad_items(self) -> None:
        sets: dict[str, list[PadTag]] = {}
        for tag in self._pad_now():
            if tag.item_id:
                sets.setdefault(tag.item_id, []).append(tag)
        for item_id, parts in sets.items():
            if item_id in self.pad_done or self.mode is None:
                continue
            # A multi-part set goes through only with every part on the pad;
            # nothing is sent to the server before (ISO 28560 part/parts).
            if not _whole_set(parts):
                self._show(
                    ItemOutcome(
                        action=self.mode,
                        barcode=item_id,
                        result=Result.REFUSED,
                        refusal=Refusal.SET_INCOMPLETE,
                    )
                )
                continue
            self.pad_done.add(item_id)
            await self.item(item_id, uids=[tag.uid for tag in parts])

    async def _secure(self, outcome: ItemOutcome, uids: list[str]) -> ItemOutcome:
        """Write the tags' security now that the server has answered."""
        if self.devices is None or outcome.result is Result.REFUSED:
            return outcome
        if outcome.action is Action.RETURN:
            secured = True
        elif outcome.result is Result.DONE and outcome.release_security:
            secured = False
        else:
            return outcome
        try:
            written = await self.devices.set_security(uids, secured)
        except Exception:
            # Whatever the reader's driver raises, the loan or return is done:
            # the patron sees it, and takes the item to the desk.
            log.failure("writing the tags' security failed")
            written = False
        return outcome if written else replace(outcome, security_failed=True)

    async def item(self, barcode: str, uids: list[str] | None = None) -> None:
        """One item scanned in the item loop (`uids`: its tags on the pad).

        Items go to the server one at a time, in the order scanned. A read of
        an item already waiting or on its way (a scanner re-reading the book
        under it) is dropped before it queues, and the scans still waiting
        when the session ends are dropped with it (`_drop_waiting_items`).
        """
        if self.screen is not Screen.ITEMS or self.mode is None:
            return
        if barcode in self.items_queued:
            self.touch()
            return
        session = self._session
        self.items_queued.add(barcode)
        try:
            await self._lock.acquire()
        except defer.CancelledError:
            return  # the session ended while this scan waited
        waited_on_server = False
        try:
            waited_on_server = await self._item_turn(session, barcode, uids)
        finally:
            if session == self._session:
                self.items_queued.discard(barcode)
            if waited_on_server:
                self._release_items(session)
            else:
                # Given the lock inside another scan's release and done at
                # once: handing it on from here would nest one release in the
                # next, as deep as the queue is long (RecursionError, and a
                # lock held for good). The next scan starts on a fresh stack.
                from twisted.internet import reactor  # noqa: PLC0415

                reactor.callLater(0, self._release_items, session)

    async def _item_turn(
        self, session: int, barcode: str, uids: list[str] | None
    ) -> bool:
        """The item's turn with the server; False when it ended without
        asking the server (the session gone, not an item, a double read)."""
        mode = self.mode
        if session != self._session or mode is None:
            return False
        if (
            self.config.patron.card_pattern
            and self._looks_like_card(barcode)
            and not self._looks_like_item(barcode)
        ):
            self._refuse(Refusal.NOT_AN_ITEM)
            return False
        if self._already_done(mode, barcode):
            # A second read of an item lent or returned in this session (a
            # scanner's double read): its row stays as it is.
            self.touch()
            return False
        self.busy = True
        self._changed()
        try:
            outcome = await self._transact(mode, barcode)
        except Exception:
            # Never leave the patron at a busy screen with no answer.
            log.failure("the {action} of an item failed", action=mode.value)
            outcome = ItemOutcome(
                action=mode,
                barcode=barcode,
                result=Result.REFUSED,
                refusal=Refusal.NOT_RECORDED,
            )
        if uids:
            outcome = await self._secure(outcome, uids)
        if session != self._session:
            return True
        self.busy = False
        self._show(outcome)
        return True

    def _release_items(self, session: int) -> None:
        self._lock.release()
        if self.finish_pending and session == self._session:
            # Finish was tapped meanwhile: now, unless more items wait.
            self.finish()

    def _drop_waiting_items(self) -> None:
        """The session ended: the scans still waiting for their turn are
        dropped (each wakes with CancelledError), never sent for the next one."""
        for waiting in list(self._lock.waiting):
            waiting.cancel()

    def items_in_flight(self) -> bool:
        """Whether an item is with the server, or waiting for its turn."""
        return bool(self._lock.locked or self._lock.waiting)

    def _already_done(self, action: Action, barcode: str) -> bool:
        if action not in {Action.BORROW, Action.RETURN}:
            return False
        return any(
            row.barcode == barcode
            and row.action is action
            and row.result in {Result.DONE, Result.QUEUED}
            for row in self.rows
        )

    async def _transact(self, action: Action, barcode: str) -> ItemOutcome:
        if action is Action.RETURN:
            return await self.desk.give_back(barcode)
        assert self.patron is not None
        if action is Action.RENEW:
            return await self.desk.renew(self.patron, barcode)
        return await self.desk.borrow(self.patron, barcode)

    def _show(self, outcome: ItemOutcome) -> None:
        # A later result for the same item replaces its row (e.g. renewed).
        self.rows = [row for row in self.rows if row.barcode != outcome.barcode]
        self.rows.insert(0, outcome)
        self.notice = None
        if outcome.result is Result.REFUSED:
            self._cue(Cue.FAILURE)
        elif outcome.result is Result.OFFER_RENEW:
            self._cue(Cue.WARNING)
        else:
            self._cue(Cue.SUCCESS)
        if (
            self.patron is not None
            and outcome.result is Result.DONE
            and outcome.action is Action.BORROW
        ):
            self.patron = _with_loan(self.patron, outcome.barcode)
        self.touch()
        self._changed()


def _whole_set(parts: list[PadTag]) -> bool:
    """Whether the tags are exactly parts 1..N of one set of N >= 1 parts.

    Tags disagreeing on N, a part number outside 1..N, a part twice or
    missing, or N of 0 all mean the set is not whole (or its tags are wrong).
    """
    counts = {tag.parts for tag in parts}
    if len(counts) != 1:
        return False
    (count,) = counts
    return count >= 1 and sorted(tag.part for tag in parts) == list(range(1, count + 1))


def _with_loan(patron: Patron, barcode: str) -> Patron:
    return replace(patron, loans=patron.loans | {barcode})
