"""Golden wire strings, written by hand from the field tables of SIP2 2.00.

Each entry pairs a message value with the exact frame (without terminator) the
codec must write for it and read back into it. Widths are spelled out in the
comments so that a reader can check them against the spec's tables.
"""

from __future__ import annotations

import datetime as dt

from sip2server.protocol import (
    AcsStatusResponse,
    AlertType,
    BlockPatronRequest,
    CheckinRequest,
    CheckinResponse,
    CheckoutRequest,
    CheckoutResponse,
    CirculationStatus,
    EndPatronSessionRequest,
    EndSessionResponse,
    FeeDetail,
    FeePaidRequest,
    FeePaidResponse,
    FeeType,
    HoldMode,
    HoldRequest,
    HoldResponse,
    HoldType,
    ItemInformationRequest,
    ItemInformationResponse,
    ItemStatusUpdateRequest,
    ItemStatusUpdateResponse,
    Language,
    LoginRequest,
    LoginResponse,
    MediaType,
    Message,
    PatronEnableRequest,
    PatronEnableResponse,
    PatronInformationRequest,
    PatronInformationResponse,
    PatronStatus,
    PatronStatusRequest,
    PatronStatusResponse,
    PaymentType,
    RenewAllRequest,
    RenewAllResponse,
    RenewRequest,
    RenewResponse,
    RequestAcsResend,
    RequestScResend,
    ScStatusCode,
    ScStatusRequest,
    SecurityMarker,
    Summary,
    SupportedMessages,
    Tristate,
)

# 2026-12-04 15:10:00 local time: "20261204" + 4 blanks + "151000".
WHEN = dt.datetime(2026, 12, 4, 15, 10, 0)
WHEN18 = "20261204    151000"
DUE = dt.datetime(2026, 12, 18, 23, 59, 0)
DUE18 = "20261218    235900"
PATRON = "21234000000018"
ITEM = "31234000000016"

ALL_SUPPORTED = SupportedMessages(**dict.fromkeys(SupportedMessages.POSITIONS, True))

GOLDEN: dict[str, tuple[Message, str]] = {
    "93 login": (
        LoginRequest(
            login_user_id="sipuser", login_password="sippass", location_code="MAIN"
        ),
        # UID algorithm "0", PWD algorithm "0", then CN CO CP.
        "9300CNsipuser|COsippass|CPMAIN|",
    ),
    "94 login response": (LoginResponse(ok=True), "941"),
    "99 sc status": (
        ScStatusRequest(
            status_code=ScStatusCode.OK, max_print_width=80, protocol_version="2.00"
        ),
        # status 1, width 3, version 4.
        "9900802.00",
    ),
    "98 acs status": (
        AcsStatusResponse(
            online_status=True,
            checkin_ok=True,
            checkout_ok=True,
            acs_renewal_policy=True,
            status_update_ok=False,
            offline_ok=False,
            timeout_period=10,
            retries_allowed=3,
            date_time_sync=WHEN,
            protocol_version="2.00",
            institution_id="TESTLIB",
            library_name="Test Library",
            supported_messages=ALL_SUPPORTED,
            terminal_location="Desk 1",
            screen_message=("Welcome",),
        ),
        # six Y/N flags, timeout 010, retries 003, date 18, version 4.
        "98YYYYNN010003" + WHEN18 + "2.00AOTESTLIB|AMTest Library|"
        "BXYYYYYYYYYYYYYYYY|ANDesk 1|AFWelcome|",
    ),
    "97 request acs resend": (RequestAcsResend(), "97"),
    "96 request sc resend": (RequestScResend(), "96"),
    "23 patron status": (
        PatronStatusRequest(
            language=Language.ENGLISH,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            terminal_password="termpw",
            patron_password="1234",
        ),
        "23001" + WHEN18 + "AOTESTLIB|AA21234000000018|ACtermpw|AD1234|",
    ),
    "24 patron status response": (
        PatronStatusResponse(
            patron_status=PatronStatus(
                charge_privileges_denied=True, too_many_items_billed=True
            ),
            language=Language.ENGLISH,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            personal_name="Wren, Maple",
            valid_patron=True,
            valid_patron_password=False,
            currency_type="USD",
            fee_amount="9.25",
            screen_message=("Hello",),
        ),
        # status: Y at 0, 12 spaces, Y at 13; language 001; date 18.
        "24Y            Y001" + WHEN18 + "AOTESTLIB|AA21234000000018|AEWren, Maple|"
        "BLY|CQN|BHUSD|BV9.25|AFHello|",
    ),
    "01 block patron": (
        BlockPatronRequest(
            card_retained=True,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            blocked_card_msg="Card kept",
            patron_identifier=PATRON,
            terminal_password="termpw",
        ),
        "01Y" + WHEN18 + "AOTESTLIB|ALCard kept|AA21234000000018|ACtermpw|",
    ),
    "63 patron information": (
        PatronInformationRequest(
            language=Language.UNKNOWN,
            transaction_date=WHEN,
            summary=Summary(charged_items=True),
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            terminal_password="termpw",
            patron_password="1234",
            start_item=1,
            end_item=5,
        ),
        # language 000, date 18, summary: Y at position 2 of 10.
        "63000" + WHEN18 + "  Y       AOTESTLIB|AA21234000000018|ACtermpw|AD1234|"
        "BP1|BQ5|",
    ),
    "64 patron information response": (
        PatronInformationResponse(
            patron_status=PatronStatus(),
            language=Language.ENGLISH,
            transaction_date=WHEN,
            hold_items_count=1,
            overdue_items_count=0,
            charged_items_count=2,
            fine_items_count=0,
            recall_items_count=0,
            unavailable_holds_count=3,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            personal_name="Wren, Maple",
            hold_items_limit=5,
            valid_patron=True,
            valid_patron_password=True,
            currency_type="USD",
            fee_amount="0.00",
            charged_items=(ITEM, "31234000000024"),
            email_address="maple@example.org",
            patron_expiry="20271231",
        ),
        # 14 blank status, 001, date 18, counts 0001 0000 0002 0000 0000 0003.
        "64              001" + WHEN18 + "000100000002000000000003"
        "AOTESTLIB|AA21234000000018|AEWren, Maple|BZ0005|BLY|CQY|BHUSD|BV0.00|"
        "AU31234000000016|AU31234000000024|BEmaple@example.org|PA20271231|",
    ),
    "64 patron information response with fee details": (
        PatronInformationResponse(
            patron_status=PatronStatus(excessive_outstanding_fines=True),
            language=Language.ENGLISH,
            transaction_date=WHEN,
            hold_items_count=0,
            overdue_items_count=0,
            charged_items_count=1,
            fine_items_count=2,
            recall_items_count=0,
            unavailable_holds_count=0,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            personal_name="Wren, Maple",
            currency_type="EUR",
            fee_amount="4.50",
            screen_message=("Please pay at the desk",),
            fee_details=(
                FeeDetail(
                    fee_remaining="3.00",
                    item_barcode=ITEM,
                    creation_date=dt.date(2026, 11, 20),
                    title="A Field Guide to Moss",
                    fee_identifier="fee-0001",
                    fee_type="Overdue fine",
                    fee_paid="0.00",
                ),
                FeeDetail(
                    fee_remaining="1.50",
                    creation_date=dt.date(2026, 12, 1),
                    fee_identifier="fee-0002",
                    fee_type="Replacement card",
                ),
            ),
        ),
        # Status: Y at position 10 (excessive fines) of 14; 001; date 18; counts
        # 0000 0000 0001 0002 0000 0000. After AF, one FA..FG run per fee in code
        # order, FC as dd.MM.yyyy; the second fee has no FB, FD or FG.
        "64          Y   001" + WHEN18 + "000000000001000200000000"
        "AOTESTLIB|AA21234000000018|AEWren, Maple|BHEUR|BV4.50|"
        "AFPlease pay at the desk|"
        "FA3.00|FB31234000000016|FC20.11.2026|FDA Field Guide to Moss|FEfee-0001|"
        "FFOverdue fine|FG0.00|"
        "FA1.50|FC01.12.2026|FEfee-0002|FFReplacement card|",
    ),
    "35 end patron session": (
        EndPatronSessionRequest(
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            terminal_password="termpw",
            patron_password="1234",
        ),
        "35" + WHEN18 + "AOTESTLIB|AA21234000000018|ACtermpw|AD1234|",
    ),
    "36 end session response": (
        EndSessionResponse(
            end_session=True,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            screen_message=("Goodbye",),
            print_line=("Thank you",),
        ),
        "36Y" + WHEN18 + "AOTESTLIB|AA21234000000018|AFGoodbye|AGThank you|",
    ),
    "37 fee paid": (
        FeePaidRequest(
            transaction_date=WHEN,
            fee_type=FeeType.OVERDUE,
            payment_type=PaymentType.CREDIT_CARD,
            currency_type="EUR",
            fee_amount="2.50",
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            terminal_password="termpw",
            fee_identifier="F17",
            transaction_id="T99",
        ),
        # date 18, fee type 04, payment type 02, currency EUR.
        "37" + WHEN18 + "0402EURBV2.50|AOTESTLIB|AA21234000000018|ACtermpw|"
        "CGF17|BKT99|",
    ),
    "38 fee paid response": (
        FeePaidResponse(
            payment_accepted=True,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            transaction_id="T99",
        ),
        "38Y" + WHEN18 + "AOTESTLIB|AA21234000000018|BKT99|",
    ),
    "17 item information": (
        ItemInformationRequest(
            transaction_date=WHEN,
            institution_id="TESTLIB",
            item_identifier=ITEM,
            terminal_password="termpw",
        ),
        "17" + WHEN18 + "AOTESTLIB|AB31234000000016|ACtermpw|",
    ),
    "18 item information response": (
        ItemInformationResponse(
            circulation_status=CirculationStatus.CHARGED,
            security_marker=SecurityMarker.TATTLE_TAPE,
            fee_type=FeeType.OTHER,
            transaction_date=WHEN,
            hold_queue_length=2,
            due_date=DUE18,
            item_identifier=ITEM,
            title_identifier="A title",
            media_type=MediaType.BOOK,
            permanent_location="MAIN",
            current_location="MAIN",
            call_number="PB LP",
        ),
        # circulation 04, security 02, fee 01, date 18.
        "180402" + "01" + WHEN18 + "CF2|AH" + DUE18 + "|AB31234000000016|AJA title|"
        "CK001|AQMAIN|APMAIN|CSPB LP|",
    ),
    "19 item status update": (
        ItemStatusUpdateRequest(
            transaction_date=WHEN,
            institution_id="TESTLIB",
            item_identifier=ITEM,
            terminal_password="termpw",
            item_properties="Box of 3",
        ),
        "19" + WHEN18 + "AOTESTLIB|AB31234000000016|ACtermpw|CHBox of 3|",
    ),
    "20 item status update response": (
        ItemStatusUpdateResponse(
            item_properties_ok=True,
            transaction_date=WHEN,
            item_identifier=ITEM,
            title_identifier="A title",
        ),
        "201" + WHEN18 + "AB31234000000016|AJA title|",
    ),
    "25 patron enable": (
        PatronEnableRequest(
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            terminal_password="termpw",
            patron_password="1234",
        ),
        "25" + WHEN18 + "AOTESTLIB|AA21234000000018|ACtermpw|AD1234|",
    ),
    "26 patron enable response": (
        PatronEnableResponse(
            patron_status=PatronStatus(hold_privileges_denied=True),
            language=Language.UNKNOWN,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            personal_name="Wren, Maple",
            valid_patron=True,
        ),
        # status: 3 spaces, Y at 3, 10 spaces.
        "26   Y          000"
        + WHEN18
        + "AOTESTLIB|AA21234000000018|AEWren, Maple|BLY|",
    ),
    "15 hold": (
        HoldRequest(
            hold_mode=HoldMode.ADD,
            transaction_date=WHEN,
            expiration_date=DUE,
            pickup_location="EAST",
            hold_type=HoldType.SPECIFIC_COPY,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            item_identifier=ITEM,
            fee_acknowledged=False,
        ),
        "15+" + WHEN18 + "BW" + DUE18 + "|BSEAST|BY3|AOTESTLIB|AA21234000000018|"
        "AB31234000000016|BON|",
    ),
    "16 hold response": (
        HoldResponse(
            ok=True,
            available=False,
            transaction_date=WHEN,
            expiration_date=DUE,
            queue_position=4,
            pickup_location="EAST",
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            item_identifier=ITEM,
        ),
        "161N" + WHEN18 + "BW" + DUE18 + "|BR4|BSEAST|AOTESTLIB|AA21234000000018|"
        "AB31234000000016|",
    ),
    "11 checkout": (
        CheckoutRequest(
            sc_renewal_policy=True,
            no_block=False,
            transaction_date=WHEN,
            nb_due_date=None,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            item_identifier=ITEM,
            terminal_password="termpw",
            patron_password="1234",
            fee_acknowledged=False,
            cancel=False,
        ),
        # renewal policy Y, no block N, date 18, nb due date 18 blanks.
        "11YN" + WHEN18 + " " * 18 + "AOTESTLIB|AA21234000000018|AB31234000000016|"
        "ACtermpw|AD1234|BON|BIN|",
    ),
    "12 checkout response": (
        CheckoutResponse(
            ok=True,
            renewal_ok=False,
            magnetic_media=Tristate.NO,
            desensitize=Tristate.YES,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            item_identifier=ITEM,
            title_identifier="A title",
            due_date=DUE18,
            media_type=MediaType.BOOK,
        ),
        # ok 1, renewal N, magnetic N, desensitize Y, date 18.
        "121NNY" + WHEN18 + "AOTESTLIB|AA21234000000018|AB31234000000016|AJA title|"
        "AH" + DUE18 + "|CK001|",
    ),
    "29 renew": (
        RenewRequest(
            third_party_allowed=False,
            no_block=False,
            transaction_date=WHEN,
            nb_due_date=DUE,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            patron_password="1234",
            item_identifier=ITEM,
        ),
        "29NN" + WHEN18 + DUE18 + "AOTESTLIB|AA21234000000018|AD1234|AB31234000000016|",
    ),
    "30 renew response": (
        RenewResponse(
            ok=False,
            renewal_ok=False,
            magnetic_media=Tristate.UNKNOWN,
            desensitize=Tristate.NO,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            item_identifier=ITEM,
            title_identifier="A title",
            due_date="",
            fee_type=FeeType.RENTAL,
            security_inhibit=True,
            screen_message=("Too many renewals",),
        ),
        # ok 0, renewal N, magnetic U, desensitize N, date 18; AH sent empty.
        "300NUN" + WHEN18 + "AOTESTLIB|AA21234000000018|AB31234000000016|AJA title|"
        "AH|BT06|CIY|AFToo many renewals|",
    ),
    "65 renew all": (
        RenewAllRequest(
            transaction_date=WHEN,
            institution_id="TESTLIB",
            patron_identifier=PATRON,
            patron_password="1234",
            fee_acknowledged=True,
        ),
        "65" + WHEN18 + "AOTESTLIB|AA21234000000018|AD1234|BOY|",
    ),
    "66 renew all response": (
        RenewAllResponse(
            ok=True,
            renewed_count=2,
            unrenewed_count=1,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            renewed_items=(ITEM, "31234000000024"),
            unrenewed_items=("31234000000032",),
        ),
        # ok 1, renewed 0002, unrenewed 0001, date 18.
        "66100020001" + WHEN18 + "AOTESTLIB|BM31234000000016|BM31234000000024|"
        "BN31234000000032|",
    ),
    "09 checkin": (
        CheckinRequest(
            no_block=False,
            transaction_date=WHEN,
            return_date=WHEN,
            current_location="MAIN",
            institution_id="TESTLIB",
            item_identifier=ITEM,
            terminal_password="termpw",
        ),
        # no block N, date 18, return date 18.
        "09N" + WHEN18 + WHEN18 + "APMAIN|AOTESTLIB|AB31234000000016|ACtermpw|",
    ),
    "10 checkin response": (
        CheckinResponse(
            ok=True,
            resensitize=True,
            magnetic_media=Tristate.NO,
            alert=True,
            transaction_date=WHEN,
            institution_id="TESTLIB",
            item_identifier=ITEM,
            permanent_location="MAIN",
            title_identifier="A title",
            sort_bin="B2",
            destination_location="EAST",
            alert_type=AlertType.SEND_TO_OTHER_BRANCH,
            hold_patron_id=PATRON,
            hold_patron_name="Wren, Maple",
        ),
        # ok 1, resensitize Y, magnetic N, alert Y, date 18.
        "101YNY" + WHEN18 + "AOTESTLIB|AB31234000000016|AQMAIN|AJA title|CLB2|"
        "CTEAST|CV04|CY21234000000018|DAWren, Maple|",
    ),
}
