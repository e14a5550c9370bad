"""Session and patron messages: login, status, resend, patron status and information,
block, enable, end session and fee paid.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

Every message is a frozen value. Fields the spec requires have no default; optional
variable fields default to None, repeatable ones to an empty tuple. Unknown field
codes received travel in `extra_fields` and are sent back unchanged.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import ClassVar

from ._bitfields import PatronStatus, Summary, SupportedMessages
from ._enums import FeeType, Language, PaymentType, ScStatusCode

ExtraFields = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """Base of every SIP2 message: the command code and unknown fields."""

    command: ClassVar[str]

    #: Fields with codes this codec does not know, as (code, value), in order.
    extra_fields: ExtraFields = ()


# --- 93/94 login -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LoginRequest(Message):
    """93, SC to ACS: log the SC in with its SIP account."""

    command: ClassVar[str] = "93"

    uid_algorithm: str = "0"
    pwd_algorithm: str = "0"  # noqa: S105 (an algorithm code, not a secret)
    login_user_id: str
    login_password: str
    location_code: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LoginResponse(Message):
    """94, ACS to SC: whether the login succeeded."""

    command: ClassVar[str] = "94"

    ok: bool


# --- 99/98 status, 97/96 resend ----------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScStatusRequest(Message):
    """99, SC to ACS: the SC's status, and a request for the ACS's."""

    command: ClassVar[str] = "99"

    status_code: ScStatusCode = ScStatusCode.OK
    max_print_width: int
    protocol_version: str = "2.00"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AcsStatusResponse(Message):
    """98, ACS to SC: what the ACS is able and allowed to do."""

    command: ClassVar[str] = "98"

    online_status: bool
    checkin_ok: bool
    checkout_ok: bool
    acs_renewal_policy: bool
    status_update_ok: bool
    offline_ok: bool
    #: Tenths of a second; 0 means offline and 999 unknown.
    timeout_period: int
    #: 999 means unknown.
    retries_allowed: int
    date_time_sync: dt.datetime | None
    protocol_version: str = "2.00"
    institution_id: str
    supported_messages: SupportedMessages
    library_name: str | None = None
    terminal_location: str | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RequestAcsResend(Message):
    """97, SC to ACS: send the last response again."""

    command: ClassVar[str] = "97"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RequestScResend(Message):
    """96, ACS to SC: the request was unusable; send it again."""

    command: ClassVar[str] = "96"


# --- 23/24 patron status, 01 block patron, 25/26 patron enable -------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PatronStatusRequest(Message):
    """23, SC to ACS: is this patron allowed to borrow?"""

    command: ClassVar[str] = "23"

    language: Language = Language.UNKNOWN
    transaction_date: dt.datetime | None
    institution_id: str
    patron_identifier: str
    terminal_password: str | None = None
    patron_password: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PatronStatusResponse(Message):
    """24, ACS to SC: the patron's status (also the answer to 01)."""

    command: ClassVar[str] = "24"

    patron_status: PatronStatus
    language: Language = Language.UNKNOWN
    transaction_date: dt.datetime | None
    institution_id: str
    patron_identifier: str
    personal_name: str
    valid_patron: bool | None = None
    valid_patron_password: bool | None = None
    currency_type: str | None = None
    fee_amount: str | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BlockPatronRequest(Message):
    """01, SC to ACS: block this patron's card (answered with 24)."""

    command: ClassVar[str] = "01"

    card_retained: bool
    transaction_date: dt.datetime | None
    institution_id: str
    blocked_card_msg: str
    patron_identifier: str
    terminal_password: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PatronEnableRequest(Message):
    """25, SC to ACS: lift the block a 01 put on this patron."""

    command: ClassVar[str] = "25"

    transaction_date: dt.datetime | None
    institution_id: str
    patron_identifier: str
    terminal_password: str | None = None
    patron_password: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PatronEnableResponse(Message):
    """26, ACS to SC: the patron's status after 25."""

    command: ClassVar[str] = "26"

    patron_status: PatronStatus
    language: Language = Language.UNKNOWN
    transaction_date: dt.datetime | None
    institution_id: str
    patron_identifier: str
    personal_name: str
    valid_patron: bool | None = None
    valid_patron_password: bool | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()


# --- 63/64 patron information ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PatronInformationRequest(Message):
    """63, SC to ACS: the patron's account, and optionally one list of items."""

    command: ClassVar[str] = "63"

    language: Language = Language.UNKNOWN
    transaction_date: dt.datetime | None
    summary: Summary = dataclasses.field(default_factory=Summary)
    institution_id: str
    patron_identifier: str
    terminal_password: str | None = None
    patron_password: str | None = None
    #: BP and BQ: the 1-based range of the list asked for in `summary`.
    start_item: int | None = None
    end_item: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FeeDetail:
    """One fee of a 64, as the Gossip extension fields FA to FG describe it.

    FOLIO sends these when position 6 of the 63 summary ("extended fees") is Y.
    Every field is optional on the wire, so every attribute may be None.
    """

    #: FA: the amount still owed, formatted by the server like BV.
    fee_remaining: str | None = None
    #: FB: the barcode of the item the fee is for.
    item_barcode: str | None = None
    #: FC: the day the fee was created, written `dd.MM.yyyy`.
    creation_date: dt.date | None = None
    #: FD: the title of the item the fee is for.
    title: str | None = None
    #: FE: the ACS's identifier of the fee (what 37 sends back in CG).
    fee_identifier: str | None = None
    #: FF: the ACS's own name for the kind of fee. FOLIO writes its fee/fine type
    #: name here, not a two-digit `FeeType` code, so this is free text.
    fee_type: str | None = None
    #: FG: the amount already paid, formatted by the server like BV.
    fee_paid: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PatronInformationResponse(Message):
    """64, ACS to SC: the patron's account, counts and the list asked for."""

    command: ClassVar[str] = "64"

    patron_status: PatronStatus
    language: Language = Language.UNKNOWN
    transaction_date: dt.datetime | None
    hold_items_count: int
    overdue_items_count: int
    charged_items_count: int
    fine_items_count: int
    recall_items_count: int
    unavailable_holds_count: int
    institution_id: str
    patron_identifier: str
    personal_name: str
    hold_items_limit: int | None = None
    overdue_items_limit: int | None = None
    charged_items_limit: int | None = None
    valid_patron: bool | None = None
    valid_patron_password: bool | None = None
    currency_type: str | None = None
    fee_amount: str | None = None
    fee_limit: str | None = None
    hold_items: tuple[str, ...] = ()
    overdue_items: tuple[str, ...] = ()
    charged_items: tuple[str, ...] = ()
    fine_items: tuple[str, ...] = ()
    recall_items: tuple[str, ...] = ()
    unavailable_hold_items: tuple[str, ...] = ()
    home_address: str | None = None
    email_address: str | None = None
    home_phone_number: str | None = None
    #: PA, PB, PC, PI: extensions of Evergreen and Koha.
    patron_expiry: str | None = None
    patron_birth_date: str | None = None
    patron_class: str | None = None
    patron_internet_profile: str | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()
    #: FA to FG: one group of Gossip fields per fee, written after every other field.
    fee_details: tuple[FeeDetail, ...] = ()


# --- 35/36 end session -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EndPatronSessionRequest(Message):
    """35, SC to ACS: the patron has finished at the SC."""

    command: ClassVar[str] = "35"

    transaction_date: dt.datetime | None
    institution_id: str
    patron_identifier: str
    terminal_password: str | None = None
    patron_password: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EndSessionResponse(Message):
    """36, ACS to SC: the patron's session has ended."""

    command: ClassVar[str] = "36"

    end_session: bool
    transaction_date: dt.datetime | None
    institution_id: str
    patron_identifier: str
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()


# --- 37/38 fee paid ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FeePaidRequest(Message):
    """37, SC to ACS: the patron paid a fee at the SC."""

    command: ClassVar[str] = "37"

    transaction_date: dt.datetime | None
    fee_type: FeeType
    payment_type: PaymentType
    #: ISO 4217, three characters (a fixed field in 37).
    currency_type: str
    fee_amount: str
    institution_id: str
    patron_identifier: str
    terminal_password: str | None = None
    patron_password: str | None = None
    fee_identifier: str | None = None
    transaction_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FeePaidResponse(Message):
    """38, ACS to SC: whether the payment was accepted."""

    command: ClassVar[str] = "38"

    payment_accepted: bool
    transaction_date: dt.datetime | None
    institution_id: str
    patron_identifier: str
    transaction_id: str | None = None
    screen_message: tuple[str, ...] = ()
    print_line: tuple[str, ...] = ()
