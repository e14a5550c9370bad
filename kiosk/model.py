"""What the kiosk's screens show and hear about, and the ports the view model uses.

Layer: `kiosk` view model (plain Python: no Kivy, never `ils`). The screens,
the sounds, the receipt choices, a notice for the patron, and the small
interfaces (`typing.Protocol`) through which `SelfCheck` reaches the SIP2 link
and the devices.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from .sipclient import LinkState
from .transactions import ItemOutcome
from .wording import Refusal


class Screen(enum.StrEnum):
    """The screens; each has one .kv file of the same name in kiosk/screens."""

    ATTRACT = "attract"
    IDENTIFY = "identify"
    PIN = "pin"
    MENU = "menu"
    ITEMS = "items"
    FINISH = "finish"
    ACCOUNT = "account"
    OUT_OF_ORDER = "out_of_order"
    STAFF = "staff"


class Cue(enum.StrEnum):
    """The sounds the kiosk plays."""

    SUCCESS = "success"
    FAILURE = "failure"
    WARNING = "warning"


class Receipt(enum.StrEnum):
    """How the patron wants the receipt."""

    PRINT = "print"
    EMAIL = "email"
    NONE = "none"


#: Screens with an idle timer.
TIMED_SCREENS = frozenset(Screen) - {Screen.ATTRACT, Screen.OUT_OF_ORDER}


class StatusLink(Protocol):
    """What the staff screen needs of the SIP2 link."""

    state: LinkState
    problem: str

    def check_now(self) -> None: ...


class Devices(Protocol):
    """What the session needs of the devices (kiosk.devices)."""

    def status(self) -> dict[str, str]: ...

    def print_receipt(
        self, card: str | None, rows: list[ItemOutcome], language: str
    ) -> bool: ...

    def print_receipt_later(
        self, card: str | None, rows: list[ItemOutcome], language: str
    ) -> Any: ...

    def set_security(self, uids: list[str], secured: bool) -> Any: ...


@dataclass(frozen=True, slots=True)
class Notice:
    """A message for the patron: a refusal, with the server's words as fallback."""

    refusal: Refusal
    screen_message: str = ""


def mask(barcode: str) -> str:
    """A card number as receipts and logs show it: all but the last 4 hidden."""
    return "*" * max(0, len(barcode) - 4) + barcode[-4:]
