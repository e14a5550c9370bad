"""Positional flag strings: the 14-character patron status, BX and the summary.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

Each class states the position of every flag explicitly in `POSITIONS`; the wire
order is never implied by the order of the attributes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar, Self

from .errors import LocalProtocolError


class _BadFlagsError(ValueError):
    """A flag string had a character the codec will not read (internal)."""


def _positions_are_complete(positions: Mapping[str, int], width: int) -> None:
    # A defensive check at import time: every position used once, none missing.
    if sorted(positions.values()) != list(range(width)):
        raise AssertionError(f"flag positions do not cover 0..{width - 1}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PatronStatus:
    """The 14-character patron status of 24, 26 and 64.

    On output `Y` means true and a space false (the spec's convention). On input
    `Y` and `y` read as true, and `N`, `n` or a space as false.
    """

    WIDTH: ClassVar[int] = 14

    #: Position of each flag in the 14-character string.
    POSITIONS: ClassVar[Mapping[str, int]] = {
        "charge_privileges_denied": 0,
        "renewal_privileges_denied": 1,
        "recall_privileges_denied": 2,
        "hold_privileges_denied": 3,
        "card_reported_lost": 4,
        "too_many_items_charged": 5,
        "too_many_items_overdue": 6,
        "too_many_renewals": 7,
        "too_many_claims_of_items_returned": 8,
        "too_many_items_lost": 9,
        "excessive_outstanding_fines": 10,
        "excessive_outstanding_fees": 11,
        "recall_overdue": 12,
        "too_many_items_billed": 13,
    }

    charge_privileges_denied: bool = False
    renewal_privileges_denied: bool = False
    recall_privileges_denied: bool = False
    hold_privileges_denied: bool = False
    card_reported_lost: bool = False
    too_many_items_charged: bool = False
    too_many_items_overdue: bool = False
    too_many_renewals: bool = False
    too_many_claims_of_items_returned: bool = False
    too_many_items_lost: bool = False
    excessive_outstanding_fines: bool = False
    excessive_outstanding_fees: bool = False
    recall_overdue: bool = False
    too_many_items_billed: bool = False

    @classmethod
    def from_wire(cls, text: str) -> Self:
        """Read the 14-character string (`Y` true; `N` or space false)."""
        return cls(**_read_flags(text, cls.POSITIONS, cls.WIDTH))

    def to_wire(self) -> str:
        """Write the 14-character string: `Y` for true, a space for false."""
        return _write_flags(self, self.POSITIONS, self.WIDTH, true="Y", false=" ")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SupportedMessages:
    """BX of 98: which of the 16 request types the ACS supports (Y/N each)."""

    WIDTH: ClassVar[int] = 16

    #: Position of each flag in the 16-character BX string.
    POSITIONS: ClassVar[Mapping[str, int]] = {
        "patron_status_request": 0,
        "checkout": 1,
        "checkin": 2,
        "block_patron": 3,
        "sc_acs_status": 4,
        "request_sc_acs_resend": 5,
        "login": 6,
        "patron_information": 7,
        "end_patron_session": 8,
        "fee_paid": 9,
        "item_information": 10,
        "item_status_update": 11,
        "patron_enable": 12,
        "hold": 13,
        "renew": 14,
        "renew_all": 15,
    }

    patron_status_request: bool = False
    checkout: bool = False
    checkin: bool = False
    block_patron: bool = False
    sc_acs_status: bool = False
    request_sc_acs_resend: bool = False
    login: bool = False
    patron_information: bool = False
    end_patron_session: bool = False
    fee_paid: bool = False
    item_information: bool = False
    item_status_update: bool = False
    patron_enable: bool = False
    hold: bool = False
    renew: bool = False
    renew_all: bool = False

    @classmethod
    def from_wire(cls, text: str) -> Self:
        """Read BX. Positions past 16 (some ACSs send 18) are ignored; missing ones
        read as N."""
        # Deviation D8: BX of any length is read (pysip2 sends 18 characters).
        padded = (text + "N" * cls.WIDTH)[: cls.WIDTH]
        return cls(**_read_flags(padded, cls.POSITIONS, cls.WIDTH))

    def to_wire(self) -> str:
        """Write the 16 Y/N characters."""
        return _write_flags(self, self.POSITIONS, self.WIDTH, true="Y", false="N")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """The 10-character summary of 63: which item list the SC asks for.

    The spec expects at most one `Y`. Position 6 is undefined in 2.00; FOLIO reads
    it as "extended fees", asking for the Gossip fee details (FA to FG) in 64.
    Positions 7 to 9 are undefined and are read and written as spaces. On input
    any of `Y`/`y` is true.
    """

    WIDTH: ClassVar[int] = 10

    #: Position of each flag in the 10-character string.
    POSITIONS: ClassVar[Mapping[str, int]] = {
        "hold_items": 0,
        "overdue_items": 1,
        "charged_items": 2,
        "fine_items": 3,
        "recall_items": 4,
        "unavailable_holds": 5,
        # Not in SIP2 2.00: FOLIO's and Gossip's "extended fees".
        "extended_fees": 6,
    }

    hold_items: bool = False
    overdue_items: bool = False
    charged_items: bool = False
    fine_items: bool = False
    recall_items: bool = False
    unavailable_holds: bool = False
    extended_fees: bool = False

    @classmethod
    def from_wire(cls, text: str) -> Self:
        """Read the 10-character summary; anything but `Y` or `y` is false.

        Positions 7 to 9 are undefined and ignored, and any character counts as
        "not asked" there and elsewhere (Koha tests that odd summaries never crash).
        """
        # Deviation D9 (docs/sip2-conformance.md): anything but Y is "not asked".
        return cls(
            **{
                name: text[position : position + 1] in ("Y", "y")
                for name, position in cls.POSITIONS.items()
            }
        )

    def to_wire(self) -> str:
        """Write the 10 characters: `Y` where asked, spaces elsewhere."""
        return _write_flags(self, self.POSITIONS, self.WIDTH, true="Y", false=" ")

    def requested(self) -> str | None:
        """The first list asked for, or None: how Koha and FOLIO read the summary."""
        for name, _ in sorted(self.POSITIONS.items(), key=lambda item: item[1]):
            if getattr(self, name):
                return name
        return None


def _read_flags(text: str, positions: Mapping[str, int], width: int) -> dict[str, bool]:
    if len(text) != width:
        raise _BadFlagsError(f"expected {width} characters, got {len(text)}")
    values: dict[str, bool] = {}
    for name, position in positions.items():
        char = text[position]
        if char in ("Y", "y"):
            values[name] = True
        elif char in ("N", "n", " "):
            values[name] = False
        else:
            raise _BadFlagsError(
                f"position {position} holds {char!r}, not Y, N or space"
            )
    return values


def _write_flags(
    flags: object, positions: Mapping[str, int], width: int, *, true: str, false: str
) -> str:
    chars = [false] * width
    for name, position in positions.items():
        value = getattr(flags, name)
        if not isinstance(value, bool):
            raise LocalProtocolError(f"{name} must be a bool, not {value!r}")
        chars[position] = true if value else false
    return "".join(chars)


_positions_are_complete(PatronStatus.POSITIONS, PatronStatus.WIDTH)
_positions_are_complete(SupportedMessages.POSITIONS, SupportedMessages.WIDTH)
