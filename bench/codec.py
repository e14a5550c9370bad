"""Decode and encode throughput of our SIP2 codec against the PyPI `pysip2` codec.

Both codecs get the same mixed set of frames in one run: login (93/94), status
(99/98), patron information (63/64), checkout (11/12), checkin (09/10) and item
information (17/18), each with error detection (AY/AZ), in the strict form
pysip2 accepts (a real nb due date in 11, every required field present). The
two codecs are timed in alternating rounds in the same process, in CPU time of
the process, and the best round of each is reported, so that a busy moment on
the machine hurts neither.

Run from the repository root:

    .venv/bin/python bench/codec.py [--rounds 10] [--seconds 0.5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sip2server.protocol import (
    AcsStatusResponse,
    CheckinRequest,
    CheckinResponse,
    CheckoutRequest,
    CheckoutResponse,
    CirculationStatus,
    FeeType,
    ItemInformationRequest,
    ItemInformationResponse,
    Language,
    LoginRequest,
    LoginResponse,
    MediaType,
    Message,
    PatronInformationRequest,
    PatronInformationResponse,
    PatronStatus,
    ScStatusCode,
    ScStatusRequest,
    SecurityMarker,
    Summary,
    SupportedMessages,
    Tristate,
    decode,
    encode,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import pysip2

NOW = dt.datetime(2026, 12, 4, 15, 10, 0)
DUE = dt.datetime(2026, 12, 18, 23, 59, 0)
PATRON = "21234000000018"
ITEM = "31234000000016"
TITLE = "The Tide Tables of the Northern Coast, 1900-1950"


def messages() -> list[Message]:
    """The mixed set: six requests a kiosk sends and the six responses to them."""
    return [
        LoginRequest(
            login_user_id="kiosk1", login_password="secret", location_code="NORTH"
        ),
        LoginResponse(ok=True),
        ScStatusRequest(
            status_code=ScStatusCode.OK, max_print_width=40, protocol_version="2.00"
        ),
        AcsStatusResponse(
            online_status=True,
            checkin_ok=True,
            checkout_ok=True,
            acs_renewal_policy=True,
            status_update_ok=False,
            offline_ok=False,
            timeout_period=100,
            retries_allowed=3,
            date_time_sync=NOW,
            protocol_version="2.00",
            institution_id="CITY",
            library_name="City Libraries",
            supported_messages=SupportedMessages(
                patron_status_request=True,
                checkout=True,
                checkin=True,
                sc_acs_status=True,
                login=True,
                patron_information=True,
                item_information=True,
            ),
            terminal_location="NORTH",
        ),
        PatronInformationRequest(
            language=Language.ENGLISH,
            transaction_date=NOW,
            summary=Summary(charged_items=True),
            institution_id="CITY",
            patron_identifier=PATRON,
            terminal_password=None,
            patron_password="1234",
            start_item=1,
            end_item=5,
        ),
        PatronInformationResponse(
            patron_status=PatronStatus(),
            language=Language.ENGLISH,
            transaction_date=NOW,
            hold_items_count=0,
            overdue_items_count=0,
            charged_items_count=2,
            fine_items_count=0,
            recall_items_count=0,
            unavailable_holds_count=0,
            institution_id="CITY",
            patron_identifier=PATRON,
            personal_name="Ada Okafor",
            charged_items_limit=10,
            valid_patron=True,
            valid_patron_password=True,
            currency_type="GBP",
            fee_amount="0.00",
            charged_items=(ITEM, "31234000000024"),
            email_address="ada@example.org",
            screen_message=("Welcome, Ada.",),
        ),
        CheckoutRequest(
            sc_renewal_policy=True,
            no_block=False,
            transaction_date=NOW,
            nb_due_date=DUE,
            institution_id="CITY",
            patron_identifier=PATRON,
            item_identifier=ITEM,
            terminal_password=None,
            patron_password="1234",
        ),
        CheckoutResponse(
            ok=True,
            renewal_ok=False,
            magnetic_media=Tristate.NO,
            desensitize=Tristate.YES,
            transaction_date=NOW,
            institution_id="CITY",
            patron_identifier=PATRON,
            item_identifier=ITEM,
            title_identifier=TITLE,
            due_date="20261218    235900",
            media_type=MediaType.BOOK,
            screen_message=("Checked out; due back 18 December 2026.",),
        ),
        CheckinRequest(
            no_block=False,
            transaction_date=NOW,
            return_date=NOW,
            current_location="NORTH",
            institution_id="CITY",
            item_identifier=ITEM,
            terminal_password=None,
        ),
        CheckinResponse(
            ok=True,
            resensitize=True,
            magnetic_media=Tristate.NO,
            alert=False,
            transaction_date=NOW,
            institution_id="CITY",
            item_identifier=ITEM,
            permanent_location="NORTH",
            title_identifier=TITLE,
            media_type=MediaType.BOOK,
        ),
        ItemInformationRequest(
            transaction_date=NOW,
            institution_id="CITY",
            item_identifier=ITEM,
            terminal_password=None,
        ),
        ItemInformationResponse(
            circulation_status=CirculationStatus.CHARGED,
            security_marker=SecurityMarker.OTHER,
            fee_type=FeeType.OTHER,
            transaction_date=NOW,
            due_date="20261218    235900",
            item_identifier=ITEM,
            title_identifier=TITLE,
            owner="NORTH",
            media_type=MediaType.BOOK,
            permanent_location="NORTH",
            current_location="NORTH",
            call_number="551.46 TUP",
        ),
    ]


def frames(values: list[Message]) -> list[bytes]:
    """Whole CR-terminated frames with AY/AZ, checked to be accepted by both."""
    result = []
    for sequence, message in enumerate(values):
        frame = encode(message, sequence=sequence % 10, error_detection=True)
        pysip2.decode_message(frame, encoding="utf-8")
        decode(frame[:-1])
        result.append(frame)
    return result


def best_rate(job: Callable[[], Any], per_call: int, seconds: float) -> float:
    """Messages per CPU second of one round of `job` lasting about `seconds`.

    CPU time of this process, not wall time: other work on a shared machine
    then slows neither codec's figure.
    """
    calls = 0
    started = time.process_time()
    deadline = started + seconds
    while True:
        job()
        calls += 1
        now = time.process_time()
        if now >= deadline:
            return calls * per_call / (now - started)


def compare(
    name: str,
    ours: Callable[[], Any],
    theirs: Callable[[], Any],
    per_call: int,
    rounds: int,
    seconds: float,
) -> tuple[float, float]:
    """Best rate of each side over alternating rounds, printed side by side."""
    ours_best = theirs_best = 0.0
    for _ in range(rounds):
        ours_best = max(ours_best, best_rate(ours, per_call, seconds))
        theirs_best = max(theirs_best, best_rate(theirs, per_call, seconds))
    ratio = ours_best / theirs_best
    print(
        f"{name:<7} ours {ours_best:>10,.0f} msg/s   pysip2 {theirs_best:>10,.0f} "
        f"msg/s   ours/pysip2 {ratio:.2f}  (messages per CPU second)"
    )
    return ours_best, theirs_best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds")
    parser.add_argument(
        "--seconds", type=float, default=0.5, help="CPU seconds of one round per codec"
    )
    arguments = parser.parse_args()

    values = messages()
    wire = frames(values)
    payloads = [frame[:-1] for frame in wire]
    theirs_values = [pysip2.decode_message(frame, encoding="utf-8") for frame in wire]
    count = len(wire)

    def our_decode() -> None:
        for frame in wire:
            # Our decoder takes the payload: the framer has cut the terminator.
            decode(frame[:-1])

    def their_decode() -> None:
        for frame in wire:
            pysip2.decode_message(frame, encoding="utf-8")

    def our_encode() -> None:
        for sequence, message in enumerate(values):
            encode(message, sequence=sequence % 10, error_detection=True)

    def their_encode() -> None:
        for sequence, decoded in enumerate(theirs_values):
            pysip2.encode_message(
                decoded.message,
                sequence_number=sequence % 10,
                checksum=True,
                encoding="utf-8",
            )

    assert [decode(payload).message for payload in payloads] == values

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{platform.system()}; pysip2 {pysip2.__version__}"
    )
    print(
        f"{count} frames per pass ({', '.join(m.command for m in values)}), "
        f"{sum(map(len, wire))} bytes; best of {arguments.rounds} alternating "
        f"rounds of {arguments.seconds:g} CPU s per codec"
    )
    decode_rates = compare(
        "decode", our_decode, their_decode, count, arguments.rounds, arguments.seconds
    )
    encode_rates = compare(
        "encode", our_encode, their_encode, count, arguments.rounds, arguments.seconds
    )
    slower = [
        name
        for name, (ours, theirs) in (("decode", decode_rates), ("encode", encode_rates))
        if ours < theirs
    ]
    if slower:
        print(f"ours is slower at: {', '.join(slower)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
