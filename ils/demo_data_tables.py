"""The demo library's fixed data: codes, names, rules, patrons and fees, and the
records that describe a built demo.

Layer: `ils` (the core). Imports `ils.models` and `ils.importing.barcodes` and
the standard library; it must not import SQLAlchemy sessions, click,
`ils.circulation`, `ils.fees` or `ils.demo` (which builds from these tables).
"""

from __future__ import annotations

from dataclasses import dataclass

from ils.importing.barcodes import BarcodeKind, make_barcode
from ils.models import FeeKind, ItemStatus

INSTITUTION_CODE = "DEMO"
INSTITUTION_NAME = "Demo Public Library"
LIBRARY_CODE = "1234"
TIMEZONE = "America/New_York"
DEMO_PIN = "1234"
BLOCK_NOTE = "Demo: please see staff"

BRANCHES = (("MAIN", "Main Library"), ("EAST", "East Branch"))
CATEGORIES = (("ADULT", "Adult"), ("CHILD", "Child"), ("STAFF", "Staff"))
# SIP2 media types: 001 book, 006 CD/CD-ROM (the nearest the standard has to a DVD).
ITEM_TYPES = (
    ("BOOK", "Book", "001"),
    ("DVD", "DVD", "006"),
    ("REF", "Reference", "001"),
)
# (category, item type, loan days, renewals, most loans at once); None is any.
LOAN_RULES: tuple[tuple[str | None, str | None, int, int, int], ...] = (
    (None, None, 21, 2, 10),
    ("CHILD", None, 14, 1, 3),
    (None, "DVD", 7, 1, 10),
)

# Overdue fines of the catch-all rule, so that a late return in the demo shows
# one: 25 cents a day after two days' grace, at most 5.00 a loan. The CHILD and
# DVD rules fine nothing.
DEMO_FINE_MINOR = 25
DEMO_FINE_GRACE_DAYS = 2
DEMO_FINE_CAP_MINOR = 500

# Made-up names for the generated patrons.
FIRST_NAMES = (
    "Ada", "Bruno", "Chiara", "Dmitri", "Elif", "Farid", "Greta", "Hiro",
    "Inés", "Jonas", "Kofi", "Lena", "Mateo", "Nadia", "Oskar", "Priya",
)  # fmt: skip
SURNAMES = (
    "Abernathy", "Bellweather", "Castellano", "Dunmore", "Eklund", "Fairbairn",
    "Grünwald", "Halloran", "Iverson", "Jablonski", "Kettering", "Lindqvist",
    "Marchetti", "Nakamura", "Okonkwo", "Pemberton", "Quill",
)  # fmt: skip


class DemoExistsError(RuntimeError):
    """The database already holds the demo library."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoPatron:
    """A demo patron as a new user needs to know it."""

    barcode: str
    name: str
    category: str
    pin: str | None
    # "ok", "expired" or "blocked".
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoItem:
    """A demo item: its barcode, what it is and where."""

    barcode: str
    title: str
    item_type: str
    branch: str
    status: ItemStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoHold:
    """A demo hold: whose, on what, where it is picked up, and how it stands."""

    patron_barcode: str
    item_barcode: str
    title: str
    pickup_branch: str
    # "waiting" (on the hold shelf, to be collected) or "pending" (in the queue).
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoLibrary:
    """What the demo database holds, with the fixed patrons and items first.

    Attributes:
        created: False when `if_missing` found the demo already there.
        patrons: the fixed patrons (serials 1 to 5), in serial order.
        items: a few available items, the first being 31234000000016.
    """

    url: str
    created: bool
    institution_id: int
    institution_code: str
    branch_codes: tuple[str, ...]
    patron_count: int
    record_count: int
    item_count: int
    patrons: tuple[DemoPatron, ...]
    items: tuple[DemoItem, ...]
    holds: tuple[DemoHold, ...] = ()
    fees: tuple[DemoFee, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoFee:
    """A demo fee still owed: whose, what for, and how much (minor units)."""

    patron_barcode: str
    kind: str
    description: str
    balance_minor: int
    currency: str


# Bob owes an overdue fine and a damage charge, so a terminal has fees to show
# and take payment for: (patron serial, kind, minor units, description).
DEMO_FEES = (
    (2, FeeKind.OVERDUE, 150, "Overdue: returned 6 days late"),
    (2, FeeKind.DAMAGE, 80, "Damage: torn dust jacket"),
)


def patron_barcode(serial: int) -> str:
    """The demo patron barcode with this serial: "2" + "1234" + serial + Luhn."""
    return make_barcode(BarcodeKind.PATRON, LIBRARY_CODE, serial)


def item_barcode(serial: int) -> str:
    """The demo item barcode with this serial: "3" + "1234" + serial + Luhn."""
    return make_barcode(BarcodeKind.ITEM, LIBRARY_CODE, serial)


@dataclass(frozen=True, slots=True)
class _FixedPatron:
    surname: str
    firstname: str
    category: str
    expired: bool = False
    blocked: bool = False


# Serials 1 to 5; the SIP2 server's tests and the README rely on these.
FIXED_PATRONS = (
    _FixedPatron("Reader", "Alice", "ADULT"),
    _FixedPatron("Borrower", "Bob", "ADULT"),
    _FixedPatron("Small", "Charlie", "CHILD"),
    _FixedPatron("Lapsed", "Dora", "ADULT", expired=True),
    _FixedPatron("Stopped", "Evan", "ADULT", blocked=True),
)
