"""The patron's way through the kiosk, as a state machine in plain Python.

Layer: `kiosk` view model. No Kivy and never `ils`: the screens bind to a
`SelfCheck` and call its methods; it calls the `SipDesk` and tells listeners
when anything changed. Every patron's data lives here for one session only and
is wiped when the session ends, so the next patron never sees it.

The way through: attract -> identify -> PIN -> menu -> item loop -> finish ->
attract; returns work from the attract screen without identifying; "my
account" shows loans (with renew buttons), holds and fees. An idle timer runs
on every screen but the attract and out-of-order ones, and no session outlives
`timeouts.session_max`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from .account import AccountScreen
from .config import KioskConfig
from .devices import PadTag
from .idle import IdleTimer
from .items import ItemLoop, _whole_set, _with_loan
from .mailer import receipt_address
from .model import (
    TIMED_SCREENS,
    Cue,
    Devices,
    Notice,
    Screen,
    StatusLink,
)
from .sipclient import LinkState
from .staff import (
    STAFF_CODE_FREE_TRIES,
    STAFF_CODE_LOCK_FIRST,
    STAFF_CODE_LOCK_MAX,
    StaffMode,
)
from .transactions import (
    Account,
    Action,
    ItemOutcome,
    Patron,
    SipDesk,
)
from .wording import Refusal

log = Logger()

# The names moved to kiosk/staff.py and kiosk/items.py stay importable here.
__all__ = [
    "AFTER_TIMEOUT_GRACE",
    "STAFF_CODE_FREE_TRIES",
    "STAFF_CODE_LOCK_FIRST",
    "STAFF_CODE_LOCK_MAX",
    "SelfCheck",
    "_whole_set",
    "_with_loan",
]

#: Seconds after a timeout in which an item scanned on the attract screen is
#: not returned (it was most likely meant for the session that just ended).
AFTER_TIMEOUT_GRACE = 5.0


# The longest barcode or tag id the kiosk sends (ISO 28560 item ids are at most
# 32 characters, library barcodes far shorter).
LONGEST_CODE = 64


def usable_code(code: str) -> bool:
    """Whether a scanned code can go to the server as it is: printable, without
    SIP2's field separator, and of a barcode's length."""
    return len(code) <= LONGEST_CODE and code.isprintable() and "|" not in code


class SelfCheck(ItemLoop, AccountScreen, StaffMode):
    """The view model of the whole kiosk."""

    def __init__(
        self,
        config: KioskConfig,
        desk: SipDesk,
        link: StatusLink,
        clock: Any,
        *,
        devices: Devices | None = None,
    ) -> None:
        self.config = config
        self.desk = desk
        self.link = link
        self.devices = devices
        self._clock = clock
        self._listeners: list[Callable[[], None]] = []
        self._cue_listeners: list[Callable[[Cue], None]] = []
        self._lock = defer.DeferredLock()
        self._session = 0
        self._session_call: Any = None
        self.idle = IdleTimer(
            clock,
            idle=config.timeouts.idle,
            warning=config.timeouts.warning,
            on_tick=self._countdown,
            on_expire=self._timed_out,
        )
        #: Taken out of service by staff; kept across restarts (a marker file
        #: beside the journal), so a crash or power cut does not undo it.
        self.out_of_service = self._service_marker().exists()
        # Wrong staff codes (and unknown cards) in a row, and the end of the
        # lock on staff-code entry they caused; both outlive sessions.
        self._staff_failures = 0
        self._staff_locked_until = 0.0
        self._staff_last_failure = float("-inf")
        self._choices_call: Any = None
        self._returns_from = 0.0
        #: The tags now on the RFID pad, by UID (the pad outlives sessions).
        self.pad: dict[str, PadTag] = {}
        #: Tags left on the pad by an earlier session: ignored until lifted.
        self.pad_left: set[str] = set()
        self.screen = Screen.ATTRACT
        self._wipe()
        self._arrive()

    # -- observers ---------------------------------------------------------------

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener()` after every change a screen may show."""
        self._listeners.append(listener)

    def on_cue(self, listener: Callable[[Cue], None]) -> None:
        """Call `listener(cue)` when a sound should play."""
        self._cue_listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _cue(self, cue: Cue) -> None:
        for listener in list(self._cue_listeners):
            listener(cue)

    # -- session data --------------------------------------------------------------

    def _wipe(self) -> None:
        """Forget everything about the patron (and their display choices)."""
        self.patron: Patron | None = None
        self.mode: Action | None = None
        self.rows: list[ItemOutcome] = []
        #: Renewals made on the account screen (also in `rows`, for the receipt).
        self.account_rows: list[ItemOutcome] = []
        self.account: Account | None = None
        self.notice: Notice | None = None
        self.entry = ""
        self.card = ""
        self.pin_tries = 0
        self.pin_locked = False
        #: Items from the RFID pad already handled in this session.
        self.pad_done: set[str] = set()
        #: Loans whose renewal is with the server now (a second tap waits).
        self.renewing: set[str] = set()
        #: Finish was tapped while an item was with the server.
        self.finish_pending = False
        #: Items scanned and not yet answered (waiting or with the server).
        self.items_queued: set[str] = set()
        self.countdown: int | None = None
        self.busy = False
        self.language = self.config.kiosk.default_language
        self.large_text = self.config.display.large_text
        self.high_contrast = self.config.display.high_contrast

    @property
    def can_serve(self) -> bool:
        """Whether patrons can be served (online, or offline with a policy)."""
        if self.out_of_service:
            return False
        return self.desk.online or (
            self.config.offline.enabled and self.desk.offline_ready
        )

    def services(self) -> set[Action]:
        """What the menu and attract screen offer right now."""
        wanted = self.config.services
        offered: set[Action] = set()
        offline = self.config.offline
        if self.desk.online:
            if wanted.borrow:
                offered.add(Action.BORROW)
            if wanted.returns:
                offered.add(Action.RETURN)
            if wanted.renew:
                offered.add(Action.RENEW)
        elif offline.enabled and self.desk.offline_ready:
            if wanted.returns and offline.returns:
                offered.add(Action.RETURN)
            if wanted.borrow and offline.checkouts:
                offered.add(Action.BORROW)
        if self.patron is not None and self.patron.borrow_refusal is not None:
            offered.discard(Action.BORROW)
            offered.discard(Action.RENEW)
        return offered

    @property
    def account_offered(self) -> bool:
        """Whether "my account" is on the menu."""
        return (
            self.config.services.account
            and self.desk.online
            and self.patron is not None
            and not self.patron.offline
        )

    @property
    def email_offered(self) -> bool:
        """An email receipt is offered only when the service is on, an SMTP host
        is configured (`[email] host`) and the patron has a usable address (BE)."""
        return (
            self.config.services.email_receipt
            and bool(self.config.email.host)
            and self.patron is not None
            and receipt_address(self.patron.email) is not None
        )

    @property
    def print_offered(self) -> bool:
        """A printed receipt is offered only when a printer is configured, and
        not while it reports that it is out of paper (or offline)."""
        if not (self.config.services.print_receipt and self.config.devices.printer):
            return False
        if self.devices is None:
            return True
        return self.devices.status().get("printer") not in {"paper out", "offline"}

    # -- moving between screens ---------------------------------------------------

    def _go(self, screen: Screen) -> None:
        if screen is not self.screen:
            # Keys typed on one screen (a staff code on the out-of-order screen,
            # half a card number) never carry into the next, nor to the next
            # patron.
            self.entry = ""
        self.screen = screen
        if screen in TIMED_SCREENS:
            self.idle.poke()
            if self._session_call is None:
                self._session_call = self._clock.callLater(
                    self.config.timeouts.session_max, self._timed_out
                )
        else:
            self.idle.stop()
        self.countdown = None
        self._changed()

    def _arrive(self) -> None:
        """Go to the attract screen, or out of order when patrons cannot be served."""
        self._go(Screen.ATTRACT if self.can_serve else Screen.OUT_OF_ORDER)

    def end_session(self) -> None:
        """End the patron's session at once and wipe its data."""
        patron = self.patron
        self._session += 1
        self._drop_waiting_items()
        if self._session_call is not None and self._session_call.active():
            self._session_call.cancel()
        self._session_call = None
        self._wipe()
        # Whatever lies on the pad now belongs to the last patron: never act
        # on it (or show it) for the next one until it has been lifted.
        self.pad_left = set(self.pad)
        if patron is not None:
            self.run(self.desk.end_session(patron))
        self._arrive()

    def link_changed(self, state: LinkState) -> None:
        """The link to the server came up or went down."""
        if state is LinkState.ONLINE:
            self.run(self._replay())
        if self.screen in {Screen.ATTRACT, Screen.OUT_OF_ORDER}:
            self._arrive()
        else:
            self._changed()

    async def _replay(self) -> None:
        sent = await self.desk.replay()
        if sent:
            log.info("replayed {count} offline transactions", count=sent)
            self._changed()

    def run(self, work: Awaitable[Any]) -> defer.Deferred[Any]:
        """Start async work (from a button or a device); failures are logged."""

        async def guarded() -> Any:
            return await work

        def failed(failure: Any) -> None:
            log.failure("kiosk work failed", failure)

        return defer.ensureDeferred(guarded()).addErrback(failed)

    # -- the patron's input --------------------------------------------------------

    def touch(self) -> None:
        """Any touch or key: the patron is still there."""
        if self.screen in TIMED_SCREENS:
            self.idle.poke()
            self.countdown = None
            self._changed()
        else:
            self._forget_choices_later()

    def _forget_choices_later(self) -> None:
        """Language and display choices made on the welcome screen by someone
        who then starts no session are undone after `timeouts.idle`, so the
        next person finds the defaults."""
        if self._choices_call is not None and self._choices_call.active():
            self._choices_call.cancel()
        self._choices_call = self._clock.callLater(
            self.config.timeouts.idle, self._forget_choices
        )

    def _forget_choices(self) -> None:
        self._choices_call = None
        if self.screen in TIMED_SCREENS:
            return  # a session started: its own end resets them
        defaults = (
            self.config.kiosk.default_language,
            self.config.display.large_text,
            self.config.display.high_contrast,
        )
        if (self.language, self.large_text, self.high_contrast) != defaults:
            self.language, self.large_text, self.high_contrast = defaults
            self._changed()

    def choose_language(self, code: str) -> None:
        """Switch the language for this session."""
        if code in self.config.kiosk.languages:
            self.language = code
            self.touch()
            self._changed()

    def toggle_large_text(self) -> None:
        """Large text on or off, for this session."""
        self.large_text = not self.large_text
        self.touch()
        self._changed()

    def toggle_high_contrast(self) -> None:
        """High contrast on or off, for this session."""
        self.high_contrast = not self.high_contrast
        self.touch()
        self._changed()

    def start(self) -> None:
        """A touch on the attract screen: identify first, for everything but returns."""
        if self.screen is Screen.ATTRACT:
            self._go(Screen.IDENTIFY)

    def start_returns(self) -> None:
        """Return items without identifying."""
        if self.screen is Screen.ATTRACT and Action.RETURN in self.services():
            self.mode = Action.RETURN
            self._go(Screen.ITEMS)
            self._items_on_pad()

    def press_key(self, key: str) -> None:
        """A key of the on-screen (or hardware) keypad: a digit, "back" or "clear".

        On the out-of-order screen the keypad takes only the staff code.
        """
        keypad = {Screen.IDENTIFY, Screen.PIN, Screen.OUT_OF_ORDER}
        if self.screen not in keypad or self.pin_locked:
            return
        if key == "back":
            self.entry = self.entry[:-1]
        elif key == "clear":
            self.entry = ""
        elif len(key) == 1 and key.isalnum() and len(self.entry) < 32:
            self.entry += key
        self.touch()
        self._changed()

    async def submit(self) -> None:
        """The keypad's OK: the typed card number or PIN."""
        typed, self.entry = self.entry, ""
        if not typed:
            return
        if self.screen is Screen.IDENTIFY:
            await self._card_or_staff_code(typed)
        elif self.screen is Screen.PIN:
            await self._pin(typed)
        elif self.screen is Screen.OUT_OF_ORDER:
            await self._staff_at_out_of_order(typed)

    async def scan(self, code: str) -> None:
        """A barcode or tag from any reader, or keystrokes ending in Enter."""
        code = code.strip()
        if not code:
            return
        self.touch()
        if not usable_code(code):
            # Never sent: SIP2 would change it (a `|` or a control byte becomes
            # a space, a long value is cut), and the reply would not match.
            self._refuse(Refusal.SCAN_UNREADABLE)
            return
        screen = self.screen
        if screen is Screen.ATTRACT:
            await self._scan_at_attract(code)
        elif screen is Screen.IDENTIFY:
            await self._card_or_staff_code(code)
        elif screen is Screen.OUT_OF_ORDER:
            await self._staff_at_out_of_order(code)
        elif screen is Screen.PIN:
            # A scanner never enters a PIN (a card scanned twice would be
            # taken for a wrong PIN and lock the patron's own card).
            self._refuse(Refusal.PIN_NOT_SCANNED)
        elif screen is Screen.ITEMS:
            await self.item(code)

    def scan_rejected(self) -> None:
        """A scanner read something unusable (a bad check digit): scan again."""
        self.touch()
        self._refuse(Refusal.SCAN_UNREADABLE)

    async def _card_or_staff_code(self, code: str) -> None:
        session, screen = self._session, self.screen
        if await self._is_staff_code(code):
            if session == self._session and self.screen is screen:
                self.open_staff()
            return
        if session != self._session or self.screen is not screen:
            return
        if not self._looks_like_card(code) and self._may_be_staff_code(code):
            self._staff_code_failed()
        await self._card(code)

    async def _scan_at_attract(self, code: str) -> None:
        if code in self.config.kiosk.staff_cards:
            self.open_staff()
            return
        if self._looks_like_item(code) and self._clock.seconds() < self._returns_from:
            log.info("an item scanned just after a timeout was ignored")
            return
        if self._looks_like_item(code) and Action.RETURN in self.services():
            self.start_returns()
            await self.item(code)
            return
        self._go(Screen.IDENTIFY)
        await self._card(code)

    def _looks_like_item(self, code: str) -> bool:
        pattern = self.config.patron.item_pattern
        return bool(pattern) and re.fullmatch(pattern, code) is not None

    def _looks_like_card(self, code: str) -> bool:
        pattern = self.config.patron.card_pattern
        return not pattern or re.fullmatch(pattern, code) is not None

    async def _card(self, barcode: str) -> None:
        if not self._looks_like_card(barcode):
            self._refuse(Refusal.NOT_A_CARD)
            return
        self.card = barcode
        if self.config.patron.pin_required and self.desk.online:
            # Deliberately before asking the server about the card: whether a
            # card number exists is not told to someone without its PIN (no
            # card enumeration at the kiosk); an unknown card is refused after
            # the PIN, back at the card prompt (docs/kiosk.md).
            self.notice = None
            self._go(Screen.PIN)
            return
        await self._identify(None)

    async def _pin(self, pin: str) -> None:
        if (
            pin == self.card
            or (self.config.patron.card_pattern and self._looks_like_card(pin))
            or self._looks_like_item(pin)
        ):
            # A keyboard-wedge scan of a card or item typed into the PIN field.
            self._refuse(Refusal.PIN_NOT_SCANNED)
            return
        await self._identify(pin)

    async def _identify(self, pin: str | None) -> None:
        session = self._session
        self.busy = True
        self._changed()
        try:
            found = await self.desk.identify(self.card, pin)
        except Exception:
            # Never leave the patron at a busy screen with no answer.
            log.failure("identifying a patron failed")
            if session == self._session:
                self.busy = False
                self._refuse(Refusal.SERVER_UNREACHABLE)
            return
        if session != self._session:
            return
        self.busy = False
        if found.patron is None:
            refusal = found.refusal or Refusal.OTHER
            if refusal is Refusal.PIN_WRONG:
                self.pin_tries += 1
                if self.pin_tries >= self.config.patron.pin_max_tries:
                    self.pin_locked = True
                    refusal = Refusal.PIN_TRIES_EXHAUSTED
            elif refusal is Refusal.PIN_TRIES_EXHAUSTED:
                # The server locked the PIN: no more tries here either.
                self.pin_locked = True
            elif self.screen is Screen.PIN:
                # Unknown card: back to the card prompt, revealing nothing more.
                self.card = ""
                self._go(Screen.IDENTIFY)
            if (
                refusal is Refusal.CARD_NOT_RECOGNISED
                and not self.config.patron.card_pattern
            ):
                # Perhaps a staff code guessed on the keypad: without a card
                # pattern it cannot be told from a card. With one, a card-like
                # code is a patron's typo, never counted against staff.
                self._staff_code_failed()
            self._refuse(refusal, found.screen_message)
            return
        self.patron = found.patron
        self.card = ""
        self.notice = (
            None
            if found.patron.borrow_refusal is None
            else Notice(found.patron.borrow_refusal, found.patron.screen_message)
        )
        self._cue(Cue.SUCCESS)
        self._go(Screen.MENU)

    def _refuse(self, refusal: Refusal, screen_message: str = "") -> None:
        self.notice = Notice(refusal, screen_message)
        self._cue(Cue.FAILURE)
        self._changed()

    def choose(self, action: Action) -> None:
        """A menu choice: borrow, return or renew (then scan items)."""
        action = Action(action)
        if self.screen is Screen.MENU and action in self.services():
            self.mode = action
            self.notice = None
            self._go(Screen.ITEMS)
            self._items_on_pad()

    def back_to_menu(self) -> None:
        """From the item loop or the account to the menu (or finish, if anonymous)."""
        if self.patron is None:
            self.finish()
        else:
            self._go(Screen.MENU)

    # -- timeouts ------------------------------------------------------------------

    def _countdown(self, seconds_left: int | None) -> None:
        if seconds_left is not None and self.countdown is None:
            self._cue(Cue.WARNING)
        self.countdown = seconds_left
        self._changed()

    def _timed_out(self) -> None:
        log.info("session timed out on the {screen} screen", screen=self.screen.value)
        self._returns_from = self._clock.seconds() + AFTER_TIMEOUT_GRACE
        self.end_session()
