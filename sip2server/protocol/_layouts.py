"""The wire layout of every message: its fixed fields, then its variable fields.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

The layouts are data, read by one generic encoder and decoder. Fixed fields are
listed in wire order with their widths; variable fields are listed in the order
the encoder writes them (the spec's order). A variable field marked `required` is
always written, empty when its value is None (strict peers such as pysip2 insist
on AC, AD and AP even when empty).
"""

from __future__ import annotations

from . import _messages_item as item
from . import _messages_patron as patron
from ._bitfields import PatronStatus, Summary, SupportedMessages
from ._enums import (
    AlertType,
    CirculationStatus,
    FeeType,
    HoldMode,
    HoldType,
    Language,
    MediaType,
    PaymentType,
    ScStatusCode,
    SecurityMarker,
    Tristate,
)
from ._fields import (
    Code,
    Date,
    DayMonthYear,
    Flags,
    Number,
    OneZero,
    Text,
    Version,
    YesNo,
)
from ._layout_types import FieldGroup, FixedField, Layout, VariableField

# --- fixed fields ------------------------------------------------------------------

_DATE = FixedField("transaction_date", Date())
# Deviation D5 (docs/sip2-conformance.md).
# Unknown language codes read as 000: the language only picks the wording of screen
# messages, so refusing a whole request over it would help nobody.
_LANGUAGE = FixedField("language", Code(Language, 3, lenient=Language.UNKNOWN))
_PATRON_STATUS = FixedField("patron_status", Flags(PatronStatus, PatronStatus.WIDTH))


def _yes_no(name: str) -> FixedField:
    return FixedField(name, YesNo())


def _one_zero(name: str) -> FixedField:
    return FixedField(name, OneZero())


def _count(name: str, width: int = 4) -> FixedField:
    return FixedField(name, Number(width))


# --- variable fields ---------------------------------------------------------------


def _text(code: str, name: str, *, required: bool = False) -> VariableField:
    return VariableField(code, name, Text(), required=required)


def _repeat(code: str, name: str) -> VariableField:
    return VariableField(code, name, Text(), repeat=True)


def _flag(code: str, name: str) -> VariableField:
    return VariableField(code, name, YesNo(None))


_AO = _text("AO", "institution_id", required=True)
_AA = _text("AA", "patron_identifier", required=True)
_AB = _text("AB", "item_identifier", required=True)
_AC = _text("AC", "terminal_password")
_AC_REQUIRED = _text("AC", "terminal_password", required=True)
_AD = _text("AD", "patron_password")
_AD_REQUIRED = _text("AD", "patron_password", required=True)
_AE = _text("AE", "personal_name", required=True)
_AF = _repeat("AF", "screen_message")
_AG = _repeat("AG", "print_line")
_AJ = _text("AJ", "title_identifier")
_AQ = _text("AQ", "permanent_location")
_AP = _text("AP", "current_location")
_BH = _text("BH", "currency_type")
_BK = _text("BK", "transaction_id")
_BL = _flag("BL", "valid_patron")
_BO = _flag("BO", "fee_acknowledged")
_BI = _flag("BI", "cancel")
_BV = _text("BV", "fee_amount")
_CH = _text("CH", "item_properties")
_CK = VariableField("CK", "media_type", Code(MediaType))
_CQ = _flag("CQ", "valid_patron_password")
_TRAILER = (_AF, _AG)


def _layout(
    message_type: type[patron.Message],
    fixed: tuple[FixedField, ...],
    *variable: VariableField,
    groups: tuple[FieldGroup, ...] = (),
) -> Layout:
    return Layout(message_type, fixed, variable, groups)


# The Gossip extension's fee details in 64: one run per fee in code order, as
# FOLIO writes them. We write FA in every run, empty when None, so that it marks
# where each run starts (_groups.py).
_FEE_DETAILS = FieldGroup(
    "fee_details",
    patron.FeeDetail,
    (
        _text("FA", "fee_remaining"),
        _text("FB", "item_barcode"),
        VariableField("FC", "creation_date", DayMonthYear()),
        _text("FD", "title"),
        _text("FE", "fee_identifier"),
        _text("FF", "fee_type"),
        _text("FG", "fee_paid"),
    ),
)


_CIRCULATION_RESULT = (
    _one_zero("ok"),
    _yes_no("renewal_ok"),
    FixedField("magnetic_media", Code(Tristate, 1)),
    FixedField("desensitize", Code(Tristate, 1)),
    _DATE,
)
_CIRCULATION_RESULT_FIELDS = (
    _AO,
    _AA,
    _AB,
    _text("AJ", "title_identifier", required=True),
    _text("AH", "due_date", required=True),
    VariableField("BT", "fee_type", Code(FeeType)),
    _flag("CI", "security_inhibit"),
    _BH,
    _BV,
    _CK,
    _CH,
    _BK,
    *_TRAILER,
)

LAYOUTS: tuple[Layout, ...] = (
    _layout(
        patron.LoginRequest,
        (FixedField("uid_algorithm", Text(1)), FixedField("pwd_algorithm", Text(1))),
        _text("CN", "login_user_id", required=True),
        _text("CO", "login_password", required=True),
        _text("CP", "location_code"),
    ),
    _layout(patron.LoginResponse, (_one_zero("ok"),)),
    _layout(
        patron.ScStatusRequest,
        (
            FixedField("status_code", Code(ScStatusCode, 1)),
            _count("max_print_width", 3),
            FixedField("protocol_version", Version()),
        ),
    ),
    _layout(
        patron.AcsStatusResponse,
        (
            _yes_no("online_status"),
            _yes_no("checkin_ok"),
            _yes_no("checkout_ok"),
            _yes_no("acs_renewal_policy"),
            _yes_no("status_update_ok"),
            _yes_no("offline_ok"),
            _count("timeout_period", 3),
            _count("retries_allowed", 3),
            FixedField("date_time_sync", Date()),
            FixedField("protocol_version", Version()),
        ),
        _AO,
        _text("AM", "library_name"),
        VariableField(
            "BX", "supported_messages", Flags(SupportedMessages), required=True
        ),
        _text("AN", "terminal_location"),
        *_TRAILER,
    ),
    _layout(patron.RequestAcsResend, ()),
    _layout(patron.RequestScResend, ()),
    _layout(
        patron.PatronStatusRequest,
        (_LANGUAGE, _DATE),
        _AO,
        _AA,
        _AC_REQUIRED,
        _AD_REQUIRED,
    ),
    _layout(
        patron.PatronStatusResponse,
        (_PATRON_STATUS, _LANGUAGE, _DATE),
        _AO,
        _AA,
        _AE,
        _BL,
        _CQ,
        _BH,
        _BV,
        *_TRAILER,
    ),
    _layout(
        patron.BlockPatronRequest,
        (_yes_no("card_retained"), _DATE),
        _AO,
        _text("AL", "blocked_card_msg", required=True),
        _AA,
        _AC_REQUIRED,
    ),
    _layout(
        patron.PatronEnableRequest,
        (_DATE,),
        _AO,
        _AA,
        _AC,
        _AD,
    ),
    _layout(
        patron.PatronEnableResponse,
        (_PATRON_STATUS, _LANGUAGE, _DATE),
        _AO,
        _AA,
        _AE,
        _BL,
        _CQ,
        *_TRAILER,
    ),
    _layout(
        patron.PatronInformationRequest,
        (_LANGUAGE, _DATE, FixedField("summary", Flags(Summary, Summary.WIDTH))),
        _AO,
        _AA,
        _AC,
        _AD,
        VariableField("BP", "start_item", Number()),
        VariableField("BQ", "end_item", Number()),
    ),
    _layout(
        patron.PatronInformationResponse,
        (
            _PATRON_STATUS,
            _LANGUAGE,
            _DATE,
            _count("hold_items_count"),
            _count("overdue_items_count"),
            _count("charged_items_count"),
            _count("fine_items_count"),
            _count("recall_items_count"),
            _count("unavailable_holds_count"),
        ),
        _AO,
        _AA,
        _AE,
        VariableField("BZ", "hold_items_limit", Number(pad=4)),
        VariableField("CA", "overdue_items_limit", Number(pad=4)),
        VariableField("CB", "charged_items_limit", Number(pad=4)),
        _BL,
        _CQ,
        _BH,
        _BV,
        _text("CC", "fee_limit"),
        _repeat("AS", "hold_items"),
        _repeat("AT", "overdue_items"),
        _repeat("AU", "charged_items"),
        _repeat("AV", "fine_items"),
        _repeat("BU", "recall_items"),
        _repeat("CD", "unavailable_hold_items"),
        _text("BD", "home_address"),
        _text("BE", "email_address"),
        _text("BF", "home_phone_number"),
        _text("PA", "patron_expiry"),
        _text("PB", "patron_birth_date"),
        _text("PC", "patron_class"),
        _text("PI", "patron_internet_profile"),
        *_TRAILER,
        groups=(_FEE_DETAILS,),
    ),
    _layout(
        patron.EndPatronSessionRequest,
        (_DATE,),
        _AO,
        _AA,
        _AC,
        _AD,
    ),
    _layout(
        patron.EndSessionResponse,
        (_yes_no("end_session"), _DATE),
        _AO,
        _AA,
        *_TRAILER,
    ),
    _layout(
        patron.FeePaidRequest,
        (
            _DATE,
            FixedField("fee_type", Code(FeeType, 2)),
            FixedField("payment_type", Code(PaymentType, 2)),
            FixedField("currency_type", Text(3)),
        ),
        _text("BV", "fee_amount", required=True),
        _AO,
        _AA,
        _AC,
        _AD,
        _text("CG", "fee_identifier"),
        _BK,
    ),
    _layout(
        patron.FeePaidResponse,
        (_yes_no("payment_accepted"), _DATE),
        _AO,
        _AA,
        _BK,
        *_TRAILER,
    ),
    _layout(
        item.ItemInformationRequest,
        (_DATE,),
        _AO,
        _AB,
        _AC,
    ),
    _layout(
        item.ItemInformationResponse,
        (
            FixedField("circulation_status", Code(CirculationStatus, 2)),
            FixedField("security_marker", Code(SecurityMarker, 2)),
            FixedField("fee_type", Code(FeeType, 2)),
            _DATE,
        ),
        VariableField("CF", "hold_queue_length", Number()),
        _text("AH", "due_date"),
        VariableField("CJ", "recall_date", Date(None)),
        VariableField("CM", "hold_pickup_date", Date(None)),
        _AB,
        _text("AJ", "title_identifier", required=True),
        _text("BG", "owner"),
        _BH,
        _BV,
        _CK,
        _AQ,
        _AP,
        _CH,
        _text("CR", "collection_code"),
        _text("CS", "call_number"),
        *_TRAILER,
    ),
    _layout(
        item.ItemStatusUpdateRequest,
        (_DATE,),
        _AO,
        _AB,
        _AC,
        _text("CH", "item_properties", required=True),
    ),
    _layout(
        item.ItemStatusUpdateResponse,
        (_one_zero("item_properties_ok"), _DATE),
        _AB,
        _AJ,
        _CH,
        *_TRAILER,
    ),
    _layout(
        item.HoldRequest,
        (FixedField("hold_mode", Code(HoldMode, 1)), _DATE),
        VariableField("BW", "expiration_date", Date(None)),
        _text("BS", "pickup_location"),
        VariableField("BY", "hold_type", Code(HoldType)),
        _AO,
        _AA,
        _AD,
        _text("AB", "item_identifier"),
        _AJ,
        _AC,
        _BO,
    ),
    _layout(
        item.HoldResponse,
        (_one_zero("ok"), _yes_no("available"), _DATE),
        VariableField("BW", "expiration_date", Date(None)),
        VariableField("BR", "queue_position", Number()),
        _text("BS", "pickup_location"),
        _AO,
        _AA,
        _text("AB", "item_identifier"),
        _AJ,
        *_TRAILER,
    ),
    _layout(
        item.CheckoutRequest,
        (
            _yes_no("sc_renewal_policy"),
            _yes_no("no_block"),
            _DATE,
            FixedField("nb_due_date", Date()),
        ),
        _AO,
        _AA,
        _AB,
        _AC_REQUIRED,
        _CH,
        _AD,
        _BO,
        _BI,
    ),
    _layout(item.CheckoutResponse, _CIRCULATION_RESULT, *_CIRCULATION_RESULT_FIELDS),
    _layout(
        item.RenewRequest,
        (
            _yes_no("third_party_allowed"),
            _yes_no("no_block"),
            _DATE,
            FixedField("nb_due_date", Date()),
        ),
        _AO,
        _AA,
        _AD,
        _text("AB", "item_identifier"),
        _AJ,
        _AC,
        _CH,
        _BO,
    ),
    _layout(item.RenewResponse, _CIRCULATION_RESULT, *_CIRCULATION_RESULT_FIELDS),
    _layout(
        item.RenewAllRequest,
        (_DATE,),
        _AO,
        _AA,
        _AD,
        _AC,
        _BO,
    ),
    _layout(
        item.RenewAllResponse,
        (
            _one_zero("ok"),
            _count("renewed_count"),
            _count("unrenewed_count"),
            _DATE,
        ),
        _AO,
        _repeat("BM", "renewed_items"),
        _repeat("BN", "unrenewed_items"),
        *_TRAILER,
    ),
    _layout(
        item.CheckinRequest,
        (_yes_no("no_block"), _DATE, FixedField("return_date", Date())),
        _text("AP", "current_location", required=True),
        _AO,
        _AB,
        _AC_REQUIRED,
        _CH,
        _BI,
    ),
    _layout(
        item.CheckinResponse,
        (
            _one_zero("ok"),
            _yes_no("resensitize"),
            FixedField("magnetic_media", Code(Tristate, 1)),
            _yes_no("alert"),
            _DATE,
        ),
        _AO,
        _AB,
        _text("AQ", "permanent_location", required=True),
        _AJ,
        _text("CL", "sort_bin"),
        _text("AA", "patron_identifier"),
        _CK,
        _CH,
        _text("CR", "collection_code"),
        _text("CS", "call_number"),
        _text("CT", "destination_location"),
        VariableField("CV", "alert_type", Code(AlertType)),
        _text("CY", "hold_patron_id"),
        _text("DA", "hold_patron_name"),
        *_TRAILER,
    ),
)

BY_COMMAND: dict[str, Layout] = {
    layout.message_type.command: layout for layout in LAYOUTS
}
BY_TYPE: dict[type[patron.Message], Layout] = {
    layout.message_type: layout for layout in LAYOUTS
}
