"""Bit positions of the positional flag strings, and the wire code of every enum."""

from __future__ import annotations

import pytest

from sip2server.protocol import (
    AlertType,
    CirculationStatus,
    FeeType,
    HoldMode,
    HoldType,
    Language,
    MediaType,
    PatronStatus,
    PaymentType,
    ScStatusCode,
    SecurityMarker,
    Summary,
    SupportedMessages,
    Tristate,
)

# The spec's order, written out by hand: position -> flag.
PATRON_STATUS_ORDER = [
    "charge_privileges_denied",
    "renewal_privileges_denied",
    "recall_privileges_denied",
    "hold_privileges_denied",
    "card_reported_lost",
    "too_many_items_charged",
    "too_many_items_overdue",
    "too_many_renewals",
    "too_many_claims_of_items_returned",
    "too_many_items_lost",
    "excessive_outstanding_fines",
    "excessive_outstanding_fees",
    "recall_overdue",
    "too_many_items_billed",
]
BX_ORDER = [
    "patron_status_request",
    "checkout",
    "checkin",
    "block_patron",
    "sc_acs_status",
    "request_sc_acs_resend",
    "login",
    "patron_information",
    "end_patron_session",
    "fee_paid",
    "item_information",
    "item_status_update",
    "patron_enable",
    "hold",
    "renew",
    "renew_all",
]
SUMMARY_ORDER = [
    "hold_items",
    "overdue_items",
    "charged_items",
    "fine_items",
    "recall_items",
    "unavailable_holds",
    "extended_fees",
]


@pytest.mark.parametrize(("position", "name"), list(enumerate(PATRON_STATUS_ORDER)))
def test_patron_status_flag_sits_at_its_position(position: int, name: str) -> None:
    """Setting one flag puts a single Y at its position; the rest are spaces."""
    expected = " " * position + "Y" + " " * (13 - position)
    assert expected == PatronStatus(**{name: True}).to_wire()
    assert PatronStatus(**{name: True}) == PatronStatus.from_wire(expected)


def test_patron_status_golden_strings() -> None:
    """All clear is 14 spaces; all set is 14 Ys; N reads as false on input."""
    assert " " * 14 == PatronStatus().to_wire()
    everything = PatronStatus(**dict.fromkeys(PATRON_STATUS_ORDER, True))
    assert "Y" * 14 == everything.to_wire()
    assert PatronStatus() == PatronStatus.from_wire("N" * 14)
    assert PatronStatus(card_reported_lost=True) == PatronStatus.from_wire(
        "NNNNYNNNNNNNNN"
    )


@pytest.mark.parametrize(("position", "name"), list(enumerate(BX_ORDER)))
def test_supported_messages_flag_sits_at_its_position(position: int, name: str) -> None:
    """Each BX flag is one Y among Ns at the position the spec gives it."""
    expected = "N" * position + "Y" + "N" * (15 - position)
    assert expected == SupportedMessages(**{name: True}).to_wire()
    assert SupportedMessages(**{name: True}) == SupportedMessages.from_wire(expected)


def test_supported_messages_of_a_real_sirsidynix_acs() -> None:
    """Edmonton's BXYYYYYYYYYYYNNYYY: no item status update, no patron enable."""
    flags = SupportedMessages.from_wire("YYYYYYYYYYYNNYYY")
    assert not flags.item_status_update
    assert not flags.patron_enable
    assert SupportedMessages.from_wire("Y" * 16) == SupportedMessages(
        **{**dict.fromkeys(BX_ORDER, True)}
    )
    assert flags.hold
    assert flags.item_information


def test_supported_messages_longer_than_16_is_read_by_the_first_16() -> None:
    """pysip2 sends 18 BX characters; the extra two are ignored."""
    assert SupportedMessages.from_wire(
        "NYYNYYYYNNNNNNNN"
    ) == SupportedMessages.from_wire("NYYNYYYYNNNNNNNNNN")


@pytest.mark.parametrize(("position", "name"), list(enumerate(SUMMARY_ORDER)))
def test_summary_flag_sits_at_its_position(position: int, name: str) -> None:
    """Each summary list is a Y at its position among ten characters."""
    expected = " " * position + "Y" + " " * (9 - position)
    assert expected == Summary(**{name: True}).to_wire()
    assert Summary(**{name: True}) == Summary.from_wire(expected)
    assert name == Summary.from_wire(expected).requested()


def test_summary_positions_7_to_9_are_ignored() -> None:
    """Koha's regression: a Y in an undefined position asks for nothing."""
    assert Summary().requested() is None
    assert Summary() == Summary.from_wire("       YYY")


def test_summary_position_6_asks_for_folio_extended_fees() -> None:
    """FOLIO's "extended fees" is a Y at position 6 and counts as the list asked for."""
    summary = Summary.from_wire("      Y   ")
    assert Summary(extended_fees=True) == summary
    assert "extended_fees" == summary.requested()


def test_summary_with_two_lists_asks_for_the_first() -> None:
    """Koha and FOLIO honour only the first Y."""
    assert "overdue_items" == Summary.from_wire(" Y Y      ").requested()


ENUM_CODES = [
    (Tristate, ["Y", "N", "U"]),
    (ScStatusCode, ["0", "1", "2"]),
    (Language, [f"{n:03d}" for n in range(28)]),
    (CirculationStatus, [f"{n:02d}" for n in range(1, 14)]),
    (SecurityMarker, ["00", "01", "02", "03"]),
    (FeeType, [f"{n:02d}" for n in range(1, 10)]),
    (PaymentType, ["00", "01", "02"]),
    (MediaType, [f"{n:03d}" for n in range(11)]),
    (HoldMode, ["+", "-", "*"]),
    (HoldType, ["1", "2", "3", "4"]),
    (AlertType, ["00", "01", "02", "03", "04", "98", "99"]),
]


@pytest.mark.parametrize(("enum_type", "codes"), ENUM_CODES)
def test_enum_values_are_exactly_the_wire_codes(
    enum_type: type, codes: list[str]
) -> None:
    """Each enum's values are the spec's codes, no more and no fewer."""
    assert codes == [member.value for member in enum_type]


def test_named_enum_members_have_the_spec_codes() -> None:
    """A few members checked by name against the spec's tables."""
    assert "08" == CirculationStatus.WAITING_ON_HOLD_SHELF.value
    assert "10" == CirculationStatus.IN_TRANSIT.value
    assert "02" == SecurityMarker.TATTLE_TAPE.value
    assert "04" == FeeType.OVERDUE.value
    assert "001" == Language.ENGLISH.value
    assert "024" == Language.UNITED_KINGDOM.value
    assert "001" == MediaType.BOOK.value
    assert "01" == AlertType.HOLD_AT_THIS_LOCATION.value
    assert "04" == AlertType.SEND_TO_OTHER_BRANCH.value
    assert "-" == HoldMode.DELETE.value
