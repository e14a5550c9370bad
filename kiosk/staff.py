"""Staff mode of the kiosk: the staff code, its lock, and the staff screen.

Layer: `kiosk` view model, a part of `SelfCheck` (kiosk/session.py). No Kivy
and never `ils`; it must not import `kiosk.session` (the session imports it).
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import threads
from twisted.logger import Logger

from .config import staff_code_matches
from .journal import EntryState
from .model import Screen

# The same namespace as before the split, so log filters keep matching.
log = Logger(namespace="kiosk.session")

#: Wrong staff codes allowed before staff-code entry locks.
STAFF_CODE_FREE_TRIES = 3
#: The first lock, in seconds; it doubles with every further wrong code.
STAFF_CODE_LOCK_FIRST = 30.0
#: The longest lock, in seconds.
STAFF_CODE_LOCK_MAX = 3600.0
#: Wrong codes are forgotten after this many seconds without one.
STAFF_CODE_FORGET_AFTER = 3600.0


class StaffMode:
    """The staff code and the staff screen, mixed into `SelfCheck`."""

    async def _staff_at_out_of_order(self, code: str) -> None:
        # Staff must be able to get back in while patrons cannot be served.
        if code in self.config.kiosk.staff_cards or await self._is_staff_code(code):
            if self.screen is Screen.OUT_OF_ORDER:
                self.open_staff()
            return
        if self._may_be_staff_code(code):
            self._staff_code_failed()

    def _may_be_staff_code(self, code: str) -> bool:
        """Whether a wrong `code` counts against staff-code entry: not when it
        looks like an item, or like a card when a card pattern is set (a
        patron's scan or typo, never a guess at the staff code)."""
        if self._looks_like_item(code):
            return False
        return not (self.config.patron.card_pattern and self._looks_like_card(code))

    async def _is_staff_code(self, code: str) -> bool:
        """Whether `code` is the staff code; checked off the event loop (scrypt).

        While staff-code entry is locked after wrong codes, nothing matches.
        """
        stored = self.config.kiosk.staff_code_hash
        if not stored or self._clock.seconds() < self._staff_locked_until:
            return False
        matched: bool = await threads.deferToThread(staff_code_matches, code, stored)
        if matched:
            self._staff_failures = 0
        return matched

    def _staff_code_failed(self) -> None:
        """A wrong staff code (or an unknown card): lock entry for a growing time.

        A code typed while entry is locked was not checked, so it does not
        count (the right code typed then must not lengthen the lock), and
        failures are forgotten after an hour without one, so that patrons'
        typos spread over a day never lock staff out.
        """
        if not self.config.kiosk.staff_code_hash:
            return
        now = self._clock.seconds()
        if now < self._staff_locked_until:
            return
        if now - self._staff_last_failure >= STAFF_CODE_FORGET_AFTER:
            self._staff_failures = 0
        self._staff_last_failure = now
        self._staff_failures += 1
        extra = self._staff_failures - STAFF_CODE_FREE_TRIES
        if extra < 0:
            return
        seconds = min(STAFF_CODE_LOCK_FIRST * 2 ** min(extra, 20), STAFF_CODE_LOCK_MAX)
        self._staff_locked_until = now + seconds
        log.warn(
            "{count} wrong staff codes or unknown cards in a row: staff code entry "
            "locked for {seconds:.0f} s",
            count=self._staff_failures,
            seconds=seconds,
        )

    # -- staff ---------------------------------------------------------------------

    # -- staff ---------------------------------------------------------------------

    def open_staff(self) -> None:
        """The staff screen: status, offline results, out of service.

        It ends any patron session first, so a late reply to a patron's request
        cannot turn the staff screen into that patron's.
        """
        patron = self.patron
        self._session += 1
        self._drop_waiting_items()
        if self._session_call is not None and self._session_call.active():
            self._session_call.cancel()
        self._session_call = None
        self._wipe()
        if patron is not None:
            self.run(self.desk.end_session(patron))
        self._go(Screen.STAFF)

    def close_staff(self) -> None:
        """Leave the staff screen."""
        self.end_session()

    def set_out_of_service(self, value: bool) -> None:
        """Take the kiosk out of service (or put it back), across restarts."""
        self.out_of_service = value
        marker = self._service_marker()
        try:
            if value:
                marker.touch()
            else:
                marker.unlink(missing_ok=True)
        except OSError as error:
            log.error(
                "out of service not kept across a restart ({path}): {error}",
                path=str(marker),
                error=str(error),
            )
        self.touch()
        self._changed()

    def _service_marker(self) -> Path:
        """The file whose presence says staff took the kiosk out of service."""
        return Path(self.config.offline.journal).with_suffix(".out-of-service")

    def retry_connection(self) -> None:
        """Staff asked to try the server again now."""
        self.link.check_now()
        self.touch()

    def replay_now(self) -> None:
        """Staff asked to replay the offline journal now (and to try it again)."""
        self.desk.journal_problem = None
        self.run(self._replay())
        self.touch()

    def devices_changed(self) -> None:
        """A device's state was read again: the staff screen shows it."""
        if self.screen is Screen.STAFF:
            self._changed()

    def staff_results(self, limit: int = 20) -> list[str]:
        """The offline replay results for the staff screen, those to check by
        hand (unknown outcome) first."""
        journal = self.desk.journal
        if journal is None:
            return []
        lines = []
        for entry in journal.results(limit):
            check = "CHECK BY HAND: " if entry.state is EntryState.UNKNOWN else ""
            lines.append(
                f"{check}{entry.happened_at:%Y-%m-%d %H:%M} {entry.kind} "
                f"{entry.item}: {entry.state} {entry.result}"
            )
        return lines

    def staff_status(self) -> dict[str, str]:
        """What the staff screen shows as status lines."""
        status = {"server": self.link.state.value}
        if self.link.problem:
            status["server"] += f" ({self.link.problem})"
        if self.devices is not None:
            status.update(self.devices.status())
        mailer = self.receipt_mailer()
        if mailer is not None:
            status.update(mailer.status())
        journal = self.desk.journal
        if self.desk.journal_problem:
            status["offline journal"] = self.desk.journal_problem
        if journal is not None:
            counts = journal.counts()
            status["offline queue"] = (
                ", ".join(
                    f"{count} {state.value}" for state, count in counts.items() if count
                )
                or "empty"
            )
        return status
