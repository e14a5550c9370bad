"""The Kivy app: screens bound to the `SelfCheck` view model.

Layer: `kiosk`, the top (Kivy, Twisted; never `ils`). One .kv file per
screen in `kiosk/screens/` holds layout and bindings only; this module copies
the view model's state into Kivy properties after every change, turns keys
into keypad presses, focus moves and scans, and plays cues. It runs on the
asyncio loop that Twisted's asyncio reactor also uses
(`App.async_run(async_lib="asyncio")`), never `install_twisted_reactor`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kivy.app import App
from kivy.clock import Clock as KivyClock
from kivy.core.window import Window
from kivy.lang import Builder
from kivy.properties import (
    BooleanProperty,
    ColorProperty,
    NumericProperty,
    StringProperty,
)
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.floatlayout import FloatLayout
from kivy.uix.screenmanager import NoTransition
from kivy.uix.screenmanager import Screen as KivyScreen
from kivy.uix.widget import Widget

from .audio import AudioCues
from .devices import KeyboardWedge
from .model import Screen
from .present import Presenter
from .session import SelfCheck
from .transactions import Action

SCREENS_DIR = Path(__file__).with_name("screens")

# Kivy key codes of the keys a hardware keypad sends.
KEY_ENTER = {13, 271}
KEY_BACKSPACE = 8
KEY_UP, KEY_DOWN, KEY_RIGHT, KEY_LEFT = 273, 274, 275, 276

NORMAL_COLOURS = {
    "bg": (0.96, 0.95, 0.92, 1),
    "fg": (0.1, 0.1, 0.1, 1),
    "panel": (1, 1, 1, 1),
    "accent": (0.12, 0.37, 0.66, 1),
    "accent_down": (0.08, 0.25, 0.45, 1),
    "button_fg": (1, 1, 1, 1),
    "header": (0.12, 0.37, 0.66, 1),
    "header_fg": (1, 1, 1, 1),
    "good": (0.15, 0.6, 0.3, 1),
    "bad": (0.75, 0.15, 0.15, 1),
    "notice_fg": (1, 1, 1, 1),
    "warning": (1, 0.85, 0.3, 1),
    "warning_fg": (0.1, 0.1, 0.1, 1),
    "focus": (1, 0.6, 0, 1),
    # A button that cannot be pressed now: plainly grey, its text still readable.
    "disabled_bg": (0.82, 0.82, 0.8, 1),
    "disabled_fg": (0.22, 0.22, 0.22, 1),
}
HIGH_CONTRAST_COLOURS = {
    "bg": (0, 0, 0, 1),
    "fg": (1, 1, 1, 1),
    "panel": (0.12, 0.12, 0.12, 1),
    "accent": (1, 0.85, 0, 1),
    "accent_down": (1, 1, 1, 1),
    "button_fg": (0, 0, 0, 1),
    "header": (0, 0, 0, 1),
    "header_fg": (1, 0.85, 0, 1),
    "good": (0.3, 1, 0.4, 1),
    "bad": (1, 0.35, 0.35, 1),
    "notice_fg": (0, 0, 0, 1),
    "warning": (1, 1, 1, 1),
    "warning_fg": (0, 0, 0, 1),
    "focus": (0, 0.9, 1, 1),
    "disabled_bg": (0.22, 0.22, 0.22, 1),
    "disabled_fg": (0.8, 0.8, 0.8, 1),
}
LARGE_TEXT_SCALE = 1.35
# Seconds a request may take before "One moment..." is shown.
BUSY_DELAY = 0.3


class KioskButton(Button):
    """A button that hardware-keypad focus can land on."""

    #: What tests and the focus ring call it ("borrow", "key:5", "renew:3123...").
    name = StringProperty("")
    focused = BooleanProperty(False)
    #: A secondary action: drawn plain instead of in the accent colour.
    quiet = BooleanProperty(False)

    def on_touch_down(self, touch: Any) -> bool:
        """A touch, unless the screen has only just changed under the finger."""
        app = App.get_running_app()
        if isinstance(app, KioskApp) and app.screen_is_new():
            # The second tap of a double tap (Finish, then "No receipt" where
            # Finish was) is dropped, not taken for a choice on the new screen.
            return bool(self.collide_point(*touch.pos))
        return bool(super().on_touch_down(touch))


class ItemRow(BoxLayout):
    """One item (or loan, or hold) in a list."""

    barcode = StringProperty("")
    title = StringProperty("")
    detail = StringProperty("")
    good = BooleanProperty(True)
    renewable = BooleanProperty(False)
    #: What the row shows, as one value (see `_show_rows`).
    values: RowValues | None = None


@dataclass(frozen=True, slots=True)
class RowValues:
    """What one `ItemRow` shows."""

    barcode: str
    title: str
    detail: str
    good: bool
    renewable: bool


def _show_rows(container: Widget, values: list[RowValues]) -> None:
    """Make `container` show these rows, top first, touching as few as it can.

    Rows whose values are gone are removed, new ones inserted where they go, and
    the rest keep their widgets and rendered text: a new scan costs one new row,
    not a rebuilt list (rebuilding on every refresh made each scan slower).
    """
    if [row.values for row in reversed(container.children)] == values:
        return
    wanted: dict[RowValues, int] = {}
    for value in values:
        wanted[value] = wanted.get(value, 0) + 1
    for row in list(container.children):
        if wanted.get(row.values, 0) > 0:
            wanted[row.values] -= 1
        else:
            container.remove_widget(row)

    for position, value in enumerate(values):
        shown = list(reversed(container.children))  # top first
        if position < len(shown) and shown[position].values == value:
            continue
        later = [row for row in shown[position + 1 :] if row.values == value]
        if later:
            row = later[0]
            container.remove_widget(row)
        else:
            row = ItemRow(
                barcode=value.barcode,
                title=value.title,
                detail=value.detail,
                good=value.good,
                renewable=value.renewable,
            )
            row.values = value
        # Kivy counts children from the bottom.
        container.add_widget(row, index=len(container.children) - position)


class KioskRoot(FloatLayout):
    """The header, the screens, the notice banner and the countdown."""


class AttractScreen(KivyScreen):
    """Touch or scan to start."""


class IdentifyScreen(KivyScreen):
    """Card number."""


class PinScreen(KivyScreen):
    """PIN."""


class MenuScreen(KivyScreen):
    """What to do."""


class ItemsScreen(KivyScreen):
    """The item loop."""


class FinishScreen(KivyScreen):
    """Receipt or not."""


class AccountScreen(KivyScreen):
    """Loans, holds, fees."""


class OutOfOrderScreen(KivyScreen):
    """Cannot serve."""


class StaffScreen(KivyScreen):
    """Status and controls for staff."""


_SCREEN_CLASSES: dict[Screen, type[KivyScreen]] = {
    Screen.ATTRACT: AttractScreen,
    Screen.IDENTIFY: IdentifyScreen,
    Screen.PIN: PinScreen,
    Screen.MENU: MenuScreen,
    Screen.ITEMS: ItemsScreen,
    Screen.FINISH: FinishScreen,
    Screen.ACCOUNT: AccountScreen,
    Screen.OUT_OF_ORDER: OutOfOrderScreen,
    Screen.STAFF: StaffScreen,
}


class KioskApp(App):
    """The self-check kiosk."""

    lang = StringProperty("en")
    scale = NumericProperty(1.0)
    library_name = StringProperty("")
    notice = StringProperty("")
    countdown = StringProperty("")
    busy = BooleanProperty(False)
    offline = BooleanProperty(False)
    entry = StringProperty("")
    greeting = StringProperty("")
    items_title = StringProperty("")
    summary = StringProperty("")
    fees = StringProperty("")
    staff_status = StringProperty("")
    staff_results = StringProperty("")
    identified = BooleanProperty(False)
    pin_locked = BooleanProperty(False)
    out_of_service = BooleanProperty(False)
    offer_borrow = BooleanProperty(False)
    offer_return = BooleanProperty(False)
    offer_renew = BooleanProperty(False)
    offer_account = BooleanProperty(False)
    offer_print = BooleanProperty(False)
    offer_email = BooleanProperty(False)

    bg = ColorProperty(NORMAL_COLOURS["bg"])
    fg = ColorProperty(NORMAL_COLOURS["fg"])
    panel = ColorProperty(NORMAL_COLOURS["panel"])
    accent = ColorProperty(NORMAL_COLOURS["accent"])
    accent_down = ColorProperty(NORMAL_COLOURS["accent_down"])
    button_fg = ColorProperty(NORMAL_COLOURS["button_fg"])
    header = ColorProperty(NORMAL_COLOURS["header"])
    header_fg = ColorProperty(NORMAL_COLOURS["header_fg"])
    good = ColorProperty(NORMAL_COLOURS["good"])
    bad = ColorProperty(NORMAL_COLOURS["bad"])
    notice_fg = ColorProperty(NORMAL_COLOURS["notice_fg"])
    warning = ColorProperty(NORMAL_COLOURS["warning"])
    warning_fg = ColorProperty(NORMAL_COLOURS["warning_fg"])
    focus = ColorProperty(NORMAL_COLOURS["focus"])
    disabled_bg = ColorProperty(NORMAL_COLOURS["disabled_bg"])
    disabled_fg = ColorProperty(NORMAL_COLOURS["disabled_fg"])

    # Kivy's own settings panel (F1) is no place for a patron: it would change
    # the display, and write its choices to KIVY_HOME's config.ini.
    use_kivy_settings = False
    #: Seconds after a screen change during which touches on buttons are
    #: dropped (a double tap must not press what appeared under the finger).
    tap_guard = 0.35

    def __init__(
        self,
        check: SelfCheck,
        presenter: Presenter,
        audio: AudioCues,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.presenter = presenter
        self.audio = audio
        self.wedge = KeyboardWedge()
        self.title = check.config.kiosk.name
        self.library_name = check.config.kiosk.name
        self._refresh_soon = KivyClock.create_trigger(self.refresh, 0)
        self._show_busy = KivyClock.create_trigger(self._busy_now, BUSY_DELAY)
        self._focus_index = -1
        self._screen_shown_at = float("-inf")
        #: Async work started from the screen and not yet finished.
        self.working: set[Any] = set()

    # -- building ------------------------------------------------------------------

    def build(self) -> Widget:
        """Load the .kv files, build the screens, and follow the view model."""
        # 1. Layout rules: the shared widgets first, then one file per screen.
        for name in ("widgets", *(screen.value for screen in Screen)):
            path = str(SCREENS_DIR / f"{name}.kv")
            # Unloaded first, so a second app in one process has one set of rules.
            Builder.unload_file(path)
            Builder.load_file(path)

        # 2. The root, and one Kivy screen per view-model screen.
        root = KioskRoot()
        manager = root.ids.screens
        manager.transition = NoTransition()
        for screen, kind in _SCREEN_CLASSES.items():
            manager.add_widget(kind(name=screen.value))

        # 3. Every change of the view model is shown on the next frame; cues
        #    play at once.
        self.check.on_change(self._refresh_soon)
        self.check.on_cue(self.audio.play)

        # 4. Keys: keypad digits, focus moves, Enter, and keyboard-wedge scans.
        Window.bind(on_key_down=self._key_down)
        self._refresh_soon()
        return root

    def screen_is_new(self) -> bool:
        """Whether the screen changed less than `tap_guard` seconds ago."""
        return time.monotonic() - self._screen_shown_at < self.tap_guard

    def open_settings(self, *_: Any) -> bool:
        """Never: the kiosk has no settings panel (Kivy opens one on F1)."""
        return False

    def on_stop(self) -> None:
        """Stop following the keyboard."""
        Window.unbind(on_key_down=self._key_down)

    def _busy_now(self, *_: Any) -> None:
        self.busy = self.check.busy

    # -- what kv calls ---------------------------------------------------------------

    def t(self, message: str, _language: str = "") -> str:
        """`message` in the session's language; kv passes `app.lang` to rebind."""
        return self.presenter.t(self.lang, message)

    def do(self, work: Awaitable[Any]) -> Any:
        """Run the view model's async work from a button or a key."""
        running = self.check.run(work)
        self.working.add(running)

        def finished(result: Any) -> Any:
            self.working.discard(running)
            return result

        running.addBoth(finished)
        return running

    def submit(self) -> None:
        """The keypad's OK."""
        self.do(self.check.submit())

    def renew(self, barcode: str) -> None:
        """A renew button on a row."""
        self.do(self.check.renew(barcode))

    # -- following the view model -----------------------------------------------------

    def refresh(self, *_: Any) -> None:
        """Copy the view model's state into the properties the kv files bind to."""
        if self.root is None or App.get_running_app() is not self:
            return
        check, present = self.check, self.presenter
        language = check.language
        self.lang = language
        self.scale = LARGE_TEXT_SCALE if check.large_text else 1.0
        colours = HIGH_CONTRAST_COLOURS if check.high_contrast else NORMAL_COLOURS
        for name, value in colours.items():
            setattr(self, name, value)

        services = check.services()
        self.offer_borrow = Action.BORROW in services
        self.offer_return = Action.RETURN in services
        self.offer_renew = Action.RENEW in services
        self.offer_account = check.account_offered
        self.offer_print = check.print_offered
        self.offer_email = check.email_offered
        self.offline = not check.desk.online and check.can_serve
        self.identified = check.patron is not None
        self.pin_locked = check.pin_locked
        self.out_of_service = check.out_of_service
        # "One moment" appears only if a request takes a while: drawing it at
        # once would cost a frame before every reply.
        if check.busy and not self.busy:
            self._show_busy()
        elif not check.busy:
            self._show_busy.cancel()
            self.busy = False

        self.notice = present.notice(language, check.notice)
        self.countdown = present.countdown(language, check.countdown)
        self.entry = (
            "•" * len(check.entry) if check.screen is Screen.PIN else check.entry
        )
        self.greeting = present.greeting(language, check)
        self.items_title = present.items_title(language, check.mode)
        self.summary = present.summary(language, check.rows)

        manager = self.root.ids.screens
        if manager.current != check.screen.value:
            manager.current = check.screen.value
            self._screen_shown_at = time.monotonic()
            self.wedge.clear()
            # Lists are filled again on entry, so nothing of a session lingers.
            for name in ("items", "account"):
                _show_rows(manager.get_screen(name).ids.rows, [])
            self.fees = ""
            self._set_focus(-1)
        if check.screen is Screen.ITEMS:
            self._fill_items(manager.get_screen("items"))
        elif check.screen is Screen.ACCOUNT:
            self._fill_account(manager.get_screen("account"))
        elif check.screen is Screen.STAFF:
            self._fill_staff()

    def _fill_items(self, screen: KivyScreen) -> None:
        texts = [self.presenter.row(self.lang, outcome) for outcome in self.check.rows]
        _show_rows(
            screen.ids.rows,
            [
                RowValues(
                    text.barcode, text.title, text.detail, text.good, text.renewable
                )
                for text in texts
            ],
        )

    def _fill_account(self, screen: KivyScreen) -> None:
        account = self.check.account
        present, language = self.presenter, self.lang
        values = []
        loans = account.loans if account is not None else ()
        # The renewals tried (above) and the loans, titles told apart by their
        # barcodes where one title is on loan twice.
        titles = iter(
            present.told_apart(
                [
                    (present.row(language, r).title, r.barcode)
                    for r in self.check.account_rows
                ]
                + [(present.loan(language, loan)[0], loan.barcode) for loan in loans]
            )
        )
        for outcome in self.check.account_rows:
            text = present.row(language, outcome)
            values.append(RowValues("", next(titles), text.detail, text.good, False))
        if account is None:
            self.fees = ""
        else:
            self.fees = present.fees(language, account.fee_total, account.currency)
            for loan in account.loans:
                _, due = present.loan(language, loan)
                values.append(
                    RowValues(
                        loan.barcode,
                        next(titles),
                        due,
                        not loan.overdue,
                        self.offer_renew,
                    )
                )
            for hold in account.holds_ready + account.holds_pending:
                title, state = present.hold(language, hold)
                values.append(RowValues("", title, state, True, False))
            # What the fees are for, each with what is still owed.
            for fee in account.fees:
                what, owed = present.fee(language, fee, account.currency)
                values.append(RowValues("", what, owed, False, False))
        _show_rows(screen.ids.rows, values)

    def _fill_staff(self) -> None:
        self.staff_status = self.presenter.staff_status(
            self.lang, self.check.staff_status()
        )
        self.staff_results = "\n".join(self.check.staff_results()) or "-"

    # -- keys ------------------------------------------------------------------------

    def _key_down(
        self, _window: Any, key: int, _scancode: int, text: str | None, _mods: Any
    ) -> bool:
        check = self.check
        check.touch()
        on_keypad = check.screen in {Screen.IDENTIFY, Screen.PIN}
        if key in KEY_ENTER:
            code = self.wedge.enter()
            if on_keypad and check.entry:
                self.submit()
            elif code and (
                self.check.config.devices.keyboard_wedge
                or check.screen is Screen.OUT_OF_ORDER
            ):
                # Out of order, typed keys and Enter are the staff code's way
                # in, with or without a keyboard-wedge scanner.
                self.do(check.scan(code))
            else:
                self._press_focused()
            return True
        if key in (KEY_UP, KEY_LEFT):
            self._move_focus(-1)
            return True
        if key in (KEY_DOWN, KEY_RIGHT):
            self._move_focus(1)
            return True
        if key == KEY_BACKSPACE and on_keypad:
            check.press_key("back")
            return True
        if text and text.isprintable():
            if on_keypad:
                check.press_key(text)
            else:
                self.wedge.key(text)
        # Every key is the kiosk's: none reaches Kivy's own bindings (F1 opens
        # its settings panel, Escape may quit the app).
        return True

    def buttons(self) -> list[KioskButton]:
        """The usable buttons now on screen, top to bottom, left to right."""
        found = [
            widget
            for widget in self.root.walk(restrict=True)
            if isinstance(widget, KioskButton)
            and not widget.disabled
            and widget.opacity > 0
            and _shown(widget, self.root.ids.screens)
        ]
        return sorted(
            found,
            key=lambda b: (-round(b.to_window(*b.pos)[1]), b.to_window(*b.pos)[0]),
        )

    def button(self, name: str) -> KioskButton:
        """The usable button called `name` (for tests and the focus ring).

        Raises:
            LookupError: no such button is usable on the current screen.
        """
        for widget in self.buttons():
            if widget.name == name:
                return widget
        raise LookupError(f"no usable button {name!r} on {self.check.screen.value}")

    def press(self, name: str) -> None:
        """Press a button as a finger would."""
        self.button(name).trigger_action(duration=0)

    def _set_focus(self, index: int) -> None:
        buttons = self.buttons()
        for number, widget in enumerate(buttons):
            widget.focused = number == index
        self._focus_index = index

    def _move_focus(self, step: int) -> None:
        count = len(self.buttons())
        if count:
            self._set_focus((self._focus_index + step) % count)

    def _press_focused(self) -> None:
        buttons = self.buttons()
        if 0 <= self._focus_index < len(buttons):
            buttons[self._focus_index].trigger_action(duration=0)

    def focused_button(self) -> KioskButton | None:
        """The button keypad focus is on, if any."""
        buttons = self.buttons()
        if 0 <= self._focus_index < len(buttons):
            return buttons[self._focus_index]
        return None


def _reading_order(widget: Widget) -> tuple[int, float]:
    x, y = widget.to_window(*widget.pos)
    return (-round(widget.top - widget.y + y), x)


def _shown(widget: Widget, manager: Any) -> bool:
    # A button is on screen when it is outside the screen manager, or inside
    # the current screen.
    parent = widget.parent
    while parent is not None and parent is not manager:
        if isinstance(parent, KivyScreen):
            return parent is manager.current_screen
        if parent.parent is parent:  # the window is its own parent
            break
        parent = parent.parent
    return True
