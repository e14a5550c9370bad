"""Item and circulation messages: item information and status update, hold,
checkout, checkin, renew and renew all.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

Conventions as in `_messages_patron`: required fields have no default, optional
variable fields default to None, repeatable ones to an empty tuple.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import ClassVar

from ._enums import (
    AlertType,
    CirculationStatus,
    FeeType,
    HoldMode,
    HoldType,
    MediaType,
    SecurityMarker,
    Tristate,
)
from ._messages_patron import Message

# --- 17/18 item information, 19/20 item status update -----------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ItemInformationRequest(Message):
    """17, SC to ACS: what is known about this item?"""

    command: ClassVar[str] = "17"

    transaction_date: dt.datetime | None
    institution_id: str
    item_identifier: str
    terminal_password: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ItemInformationResponse(Message):
    """18, ACS to SC: the item's status, title and whereabouts."""

    command: ClassVar[str] = "18"

    circulation_status: CirculationStatus
    security_marker: SecurityMarker
    fee_type: FeeType
    transaction_date: dt.datetime | None
    hold_queue_length: int | None = None
    #: AH, formatted by the server (the spec leaves its form free).
    due_date: str | None = None
    recall_date: dt.datetime | None = None
    hold_pickup_date: dt.datetime | None = None
    item_identifier: str
    title_identifier: str
    owner: str | None = None
    currency_type: str | None = None
    fee_amount: str | None = None
    media_type: MediaType | None = None
    permanent_location: str | None = None
    current_location: str | None = None
    item_properties: str | None = None
    #: CR and CS: 3M extensions.
    collection_code: str | None = None
    call_number: str | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ItemStatusUpdateRequest(Message):
    """19, SC to ACS: store new item properties."""

    command: ClassVar[str] = "19"

    transaction_date: dt.datetime | None
    institution_id: str
    item_identifier: str
    terminal_password: str | None = None
    item_properties: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ItemStatusUpdateResponse(Message):
    """20, ACS to SC: whether the item properties were stored."""

    command: ClassVar[str] = "20"

    item_properties_ok: bool
    transaction_date: dt.datetime | None
    item_identifier: str
    title_identifier: str | None = None
    item_properties: str | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()


# --- 15/16 hold --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HoldRequest(Message):
    """15, SC to ACS: place, cancel or change a hold."""

    command: ClassVar[str] = "15"

    hold_mode: HoldMode
    transaction_date: dt.datetime | None
    expiration_date: dt.datetime | None = None
    pickup_location: str | None = None
    hold_type: HoldType | None = None
    institution_id: str
    patron_identifier: str
    patron_password: str | None = None
    item_identifier: str | None = None
    title_identifier: str | None = None
    terminal_password: str | None = None
    fee_acknowledged: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HoldResponse(Message):
    """16, ACS to SC: the outcome of 15."""

    command: ClassVar[str] = "16"

    ok: bool
    available: bool
    transaction_date: dt.datetime | None
    expiration_date: dt.datetime | None = None
    queue_position: int | None = None
    pickup_location: str | None = None
    institution_id: str
    patron_identifier: str
    item_identifier: str | None = None
    title_identifier: str | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()


# --- 11/12 checkout, 29/30 renew ---------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutRequest(Message):
    """11, SC to ACS: lend this item to this patron."""

    command: ClassVar[str] = "11"

    sc_renewal_policy: bool
    no_block: bool
    transaction_date: dt.datetime | None
    nb_due_date: dt.datetime | None = None
    institution_id: str
    patron_identifier: str
    item_identifier: str
    terminal_password: str | None = None
    item_properties: str | None = None
    patron_password: str | None = None
    fee_acknowledged: bool | None = None
    cancel: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _LoanOutcome(Message):
    """The fields 12 and 30 share: the spec gives both the same layout."""

    ok: bool
    renewal_ok: bool
    magnetic_media: Tristate = Tristate.UNKNOWN
    desensitize: Tristate = Tristate.UNKNOWN
    transaction_date: dt.datetime | None
    institution_id: str
    patron_identifier: str
    item_identifier: str
    title_identifier: str
    due_date: str
    fee_type: FeeType | None = None
    security_inhibit: bool | None = None
    currency_type: str | None = None
    fee_amount: str | None = None
    media_type: MediaType | None = None
    item_properties: str | None = None
    transaction_id: str | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CheckoutResponse(_LoanOutcome):
    """12, ACS to SC: the outcome of 11."""

    command: ClassVar[str] = "12"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RenewRequest(Message):
    """29, SC to ACS: renew this patron's loan of an item."""

    command: ClassVar[str] = "29"

    third_party_allowed: bool
    no_block: bool
    transaction_date: dt.datetime | None
    nb_due_date: dt.datetime | None = None
    institution_id: str
    patron_identifier: str
    patron_password: str | None = None
    item_identifier: str | None = None
    title_identifier: str | None = None
    terminal_password: str | None = None
    item_properties: str | None = None
    fee_acknowledged: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RenewResponse(_LoanOutcome):
    """30, ACS to SC: the outcome of 29 (the same fields as 12)."""

    command: ClassVar[str] = "30"


# --- 65/66 renew all ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RenewAllRequest(Message):
    """65, SC to ACS: renew every loan of this patron."""

    command: ClassVar[str] = "65"

    transaction_date: dt.datetime | None
    institution_id: str
    patron_identifier: str
    patron_password: str | None = None
    terminal_password: str | None = None
    fee_acknowledged: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RenewAllResponse(Message):
    """66, ACS to SC: which loans 65 renewed and which it could not."""

    command: ClassVar[str] = "66"

    ok: bool
    renewed_count: int
    unrenewed_count: int
    transaction_date: dt.datetime | None
    institution_id: str
    renewed_items: tuple[str, ...] = ()
    unrenewed_items: tuple[str, ...] = ()
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()


# --- 09/10 checkin -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CheckinRequest(Message):
    """09, SC to ACS: this item has been returned."""

    command: ClassVar[str] = "09"

    no_block: bool
    transaction_date: dt.datetime | None
    return_date: dt.datetime | None = None
    current_location: str | None = None
    institution_id: str
    item_identifier: str
    terminal_password: str | None = None
    item_properties: str | None = None
    cancel: bool | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CheckinResponse(Message):
    """10, ACS to SC: the outcome of 09, with routing for sorters."""

    command: ClassVar[str] = "10"

    ok: bool
    resensitize: bool
    magnetic_media: Tristate = Tristate.UNKNOWN
    alert: bool
    transaction_date: dt.datetime | None
    institution_id: str
    item_identifier: str
    permanent_location: str
    title_identifier: str | None = None
    sort_bin: str | None = None
    patron_identifier: str | None = None
    media_type: MediaType | None = None
    item_properties: str | None = None
    #: CR, CS, CT, CV, CY, DA: 3M extensions for sorters and hold routing.
    collection_code: str | None = None
    call_number: str | None = None
    destination_location: str | None = None
    alert_type: AlertType | None = None
    hold_patron_id: str | None = None
    hold_patron_name: str | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()
