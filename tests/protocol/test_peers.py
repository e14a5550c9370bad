"""Cross-checks with two independent SIP2 implementations installed for testing:
the PyPI `pysip2` codec and the request builders of the PyPI `sip2` client."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sip2server.protocol import (
    BlockPatronRequest,
    CheckinRequest,
    CheckoutRequest,
    EndPatronSessionRequest,
    FeePaidRequest,
    FeeType,
    HoldMode,
    HoldRequest,
    InvalidFieldValue,
    ItemInformationRequest,
    ItemStatusUpdateRequest,
    LoginRequest,
    Message,
    PatronEnableRequest,
    PatronInformationRequest,
    PatronStatusRequest,
    PaymentType,
    RenewRequest,
    Reply,
    ScStatusRequest,
    Summary,
    decode,
    encode,
)
from sip2server.protocol._fields import write_date

from .golden import DUE, GOLDEN

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import pysip2
    from Sip2.sip2 import Sip2

# Our attribute names that pysip2 spells differently.
PYSIP2_NAMES = {"blocked_card_msg": "blocked_card_message"}


def as_pysip2_text(value: Any) -> Any:
    """Our value in the form pysip2 keeps it (it stores wire text)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return write_date(value)
    if hasattr(value, "to_wire"):
        return value.to_wire()
    return value


def same_value(ours: Any, theirs: Any, *, flag_style: str = "YN") -> bool:
    if isinstance(ours, bool):
        return theirs == ("Y" if ours else "N") or theirs == ("1" if ours else "0")
    if isinstance(ours, int) and not isinstance(ours, bool):
        return int(theirs) == ours
    if ours is None and isinstance(theirs, str) and theirs.strip() == "":
        return True
    return as_pysip2_text(ours) == theirs


def differences(ours: Message, theirs: Any) -> list[str]:
    """Fields whose values differ between our message and pysip2's."""
    found = []
    for field in dataclasses.fields(ours):
        if field.name == "extra_fields":
            continue
        name = PYSIP2_NAMES.get(field.name, field.name)
        if name not in theirs.__struct_fields__:
            continue  # an extension field pysip2 does not model (CV, CT, PA...)
        mine, other = getattr(ours, field.name), getattr(theirs, name)
        if not same_value(mine, other):
            found.append(f"{field.name}: ours {mine!r}, pysip2 {other!r}")
    return found


def golden_for_pysip2() -> Iterator[tuple[str, Message]]:
    for name, (message, _) in sorted(GOLDEN.items()):
        if isinstance(message, CheckoutRequest):
            # pysip2 refuses a blank nb due date (a known strictness).
            yield name, dataclasses.replace(message, nb_due_date=DUE)
        else:
            yield name, message


@pytest.mark.parametrize(("name", "message"), list(golden_for_pysip2()))
def test_pysip2_reads_what_we_write_with_the_same_values(
    name: str, message: Message
) -> None:
    """pysip2, a strict decoder, accepts our frame and sees the same values."""
    frame = encode(message, sequence=4, error_detection=True)
    theirs = pysip2.decode_message(frame, encoding="utf-8")
    assert [] == differences(message, theirs.message)
    expected_sequence = None if message.command in ("96", "97") else 4
    assert expected_sequence == theirs.sequence_number


@pytest.mark.parametrize(("name", "message"), list(golden_for_pysip2()))
def test_messages_pysip2_writes_decode_to_the_same_values(
    name: str, message: Message
) -> None:
    """A frame pysip2 encodes, with its own checksum, decodes to pysip2's values."""
    theirs = pysip2.decode_message(encode(message), encoding="utf-8").message
    sequence = None if message.command in ("96", "97") else 7
    frame = pysip2.encode_message(
        theirs, sequence_number=sequence, checksum=True, encoding="utf-8"
    )
    decoded = decode(frame.rstrip(b"\r"))
    assert sequence == decoded.sequence
    assert decoded.error_detection
    assert [] == differences(decoded.message, theirs)


@pytest.fixture(scope="module")
def sip2_client(tmp_path_factory: pytest.TempPathFactory) -> Sip2:
    """The PyPI sip2 client, configured but never connected."""
    client = Sip2()
    client.tlsEnable = False
    client.logfile_path = str(tmp_path_factory.mktemp("sip2-log"))
    client._init_logger()
    client.institutionId = "TESTLIB"
    client.scLocation = "MAIN"
    client.terminalPassword = "termpw"
    client.patron = "21234000000018"
    client.patronpwd = "1234"
    return client


def built(request: str) -> Any:
    """Decode a frame built by the sip2 client (it adds AY, AZ and CR)."""
    assert request.endswith("\r")
    decoded = decode(request[:-1].encode("utf-8"))
    assert decoded.error_detection
    return decoded.message


ITEM = "31234000000016"


def test_sip2_client_login_and_status_frames_parse(sip2_client: Sip2) -> None:
    """93 and 99 as the sip2 client builds them."""
    login = built(sip2_client.sip_login_request("sipuser", "sippass"))
    assert (
        LoginRequest(
            login_user_id="sipuser", login_password="sippass", location_code="MAIN"
        )
        == login
    )
    status = built(sip2_client.sip_sc_status_request())
    assert ScStatusRequest(max_print_width=80, protocol_version="2.00") == status


def test_sip2_client_patron_frames_parse(sip2_client: Sip2) -> None:
    """23, 63, 01, 25 and 35 carry the configured institution and patron."""
    for request, kind in [
        (sip2_client.sip_patron_status_request(), PatronStatusRequest),
        (sip2_client.sip_patron_information_request("fine"), PatronInformationRequest),
        (sip2_client.sip_block_patron_request("Card kept"), BlockPatronRequest),
        (sip2_client.sip_patron_enable_request(), PatronEnableRequest),
        (sip2_client.sip_end_patron_session_request(), EndPatronSessionRequest),
    ]:
        message = built(request)
        assert isinstance(message, kind)
        assert "TESTLIB" == message.institution_id
        assert "21234000000018" == message.patron_identifier
    info = built(sip2_client.sip_patron_information_request("fine"))
    assert Summary(fine_items=True) == info.summary
    assert (1, 5) == (info.start_item, info.end_item)


def test_sip2_client_item_frames_parse(sip2_client: Sip2) -> None:
    """11, 09, 17, 19, 29 and 65 name the item and carry blank dates correctly."""
    checkout = built(sip2_client.sip_checkout_request(ITEM))
    assert isinstance(checkout, CheckoutRequest)
    assert ITEM == checkout.item_identifier
    assert checkout.nb_due_date is None

    checkin = built(sip2_client.sip_checkin_request(ITEM))
    assert isinstance(checkin, CheckinRequest)
    assert "MAIN" == checkin.current_location

    assert ITEM == built(sip2_client.sip_item_information_request(ITEM)).item_identifier
    update = built(sip2_client.sip_item_status_update_request(ITEM, "Box of 3"))
    assert isinstance(update, ItemStatusUpdateRequest)
    assert "Box of 3" == update.item_properties
    assert isinstance(
        built(sip2_client.sip_item_information_request(ITEM)), ItemInformationRequest
    )

    renew = built(sip2_client.sip_renew_request(itemIdentifier=ITEM))
    assert isinstance(renew, RenewRequest)
    assert ITEM == renew.item_identifier


def test_sip2_client_renew_all_without_date_is_refused_precisely(
    sip2_client: Sip2,
) -> None:
    """The sip2 client's 65 forgets its transaction date: a precise date error,
    answered with a negative 66 rather than a resend loop."""
    request = sip2_client.sip_renew_all_request()
    assert request.startswith("65AOTESTLIB|")
    with pytest.raises(InvalidFieldValue) as caught:
        decode(request[:-1].encode())
    assert "transaction_date" == caught.value.field
    assert Reply.NEGATIVE == caught.value.reply
    assert "65" == caught.value.command


def test_sip2_client_hold_and_fee_frames_parse(sip2_client: Sip2) -> None:
    """15 and 37 decode with their coded fixed fields as enums."""
    hold = built(sip2_client.sip_hold_request("+", itemIdentifier=ITEM))
    assert isinstance(hold, HoldRequest)
    assert HoldMode.ADD == hold.hold_mode

    fee = built(sip2_client.sip_fee_paid_request(4, 0, "2.50"))
    assert isinstance(fee, FeePaidRequest)
    assert (FeeType.OVERDUE, PaymentType.CASH, "EUR", "2.50") == (
        fee.fee_type,
        fee.payment_type,
        fee.currency_type,
        fee.fee_amount,
    )


def test_sip2_client_sequence_numbers_wrap_after_nine(sip2_client: Sip2) -> None:
    """Twelve frames in a row carry AY digits that count up and wrap to 0."""
    sequences = [
        decode(sip2_client.sip_sc_status_request()[:-1].encode()).sequence
        for _ in range(12)
    ]
    assert all(sequence is not None for sequence in sequences)
    assert [(s + 1) % 10 for s in sequences[:-1]] == sequences[1:]


def test_sip2_client_logs_where_it_was_told(sip2_client: Sip2) -> None:
    """The client's log file went to the temporary folder, not the checkout."""
    assert (Path(sip2_client.logfile_path) / "sip2.log").exists()
