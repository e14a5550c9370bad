"""The server end to end, driven by two independent SIP2 implementations from PyPI.

The `sip2` client (Sip2.sip2.Sip2) is what many sites script their kiosks
with; `pysip2` is a strict codec, so every reply it accepts is well formed by
the letter of the spec. Both run against a real server on loopback, on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pysip2
import pytest
import pytest_twisted
from Sip2.sip2 import Sip2
from twisted.internet import threads

from tests.sip2server.conftest import (
    ADA,
    BEN,
    BLOCKED,
    EXPIRED,
    INSTITUTION,
    ITEMS,
    LOCATION,
    LOGIN,
    PASSWORD,
    PIN,
    REFERENCE_ITEM,
    SipTarget,
)


def _sip2_client(target: SipTarget, log_dir: Path, *, checksums: bool) -> Sip2:
    client = Sip2()
    client.hostName, client.hostPort = target.host, target.port
    client.tlsEnable = False
    client.logfile_path = str(log_dir)
    client.withCrc = checksums
    client.withSeq = checksums
    client.socketTimeout = 10
    client.institutionId, client.scLocation = INSTITUTION, LOCATION
    client.connect()
    return client


def _fields(parsed: dict[str, Any]) -> dict[str, list[str]]:
    return parsed["variable"]


@pytest.mark.parametrize("checksums", [True, False], ids=["with-ay-az", "plain"])
@pytest_twisted.inlineCallbacks
def test_sip2_client_runs_a_whole_patron_session(
    sip_target: SipTarget, tmp_path: Path, checksums: bool
) -> Any:
    """Login, status, patron status and info, checkout, item info, checkin, end."""

    def session() -> dict[str, Any]:
        client = _sip2_client(sip_target, tmp_path, checksums=checksums)
        seen: dict[str, Any] = {}
        try:
            seen["login"] = client.sip_login_response(
                client.get_response(client.sip_login_request(LOGIN, PASSWORD))
            )
            seen["status"] = client.sip_sc_status_response(
                client.get_response(client.sip_sc_status_request())
            )
            client.patron, client.patronpwd = ADA, PIN
            seen["patron_status"] = client.sip_patron_status_response(
                client.get_response(client.sip_patron_status_request())
            )
            seen["checkout"] = client.sip_checkout_response(
                client.get_response(client.sip_checkout_request(ITEMS[0]))
            )
            seen["info"] = client.sip_patron_information_response(
                client.get_response(client.sip_patron_information_request("charged"))
            )
            seen["item"] = client.sip_item_information_response(
                client.get_response(client.sip_item_information_request(ITEMS[0]))
            )
            seen["checkin"] = client.sip_checkin_response(
                client.get_response(client.sip_checkin_request(ITEMS[0]))
            )
            seen["end"] = client.sip_end_patron_session_response(
                client.get_response(client.sip_end_patron_session_request())
            )
            seen["raw_last"] = client.last_response
        finally:
            client.disconnect()
        return seen

    seen = yield threads.deferToThread(session)

    assert "1" == seen["login"]["fixed"]["Ok"]
    assert "Y" == seen["status"]["fixed"]["OnlineStatus"]
    # BX: all sixteen request types of SIP2 2.00 are answered.
    assert ["YYYYYYYYYYYYYYYY"] == _fields(seen["status"])["BX"]

    patron = seen["patron_status"]
    assert ["Y"] == _fields(patron)["BL"]
    assert ["Y"] == _fields(patron)["CQ"]
    assert ["Ada Okafor"] == _fields(patron)["AE"]

    checkout = seen["checkout"]
    assert "1" == checkout["fixed"]["Ok"]
    assert [ITEMS[0]] == _fields(checkout)["AB"]
    assert 18 == len(_fields(checkout)["AH"][0])

    info = seen["info"]
    assert "0001" == info["fixed"]["ChargedItemsCount"]
    assert [ITEMS[0]] == _fields(info)["AU"]

    item = seen["item"]
    assert "04" == item["fixed"]["CirculationStatus"]

    checkin = seen["checkin"]
    assert "1" == checkin["fixed"]["Ok"]
    assert [LOCATION] == _fields(checkin)["AQ"]

    assert "Y" == seen["end"]["fixed"]["EndSession"]
    if checksums:
        assert "AZ" in seen["raw_last"]
    else:
        assert "AY" not in seen["raw_last"]


def _now18() -> str:
    return datetime.now().strftime("%Y%m%d    %H%M%S")


class _PysipConnection:
    """A socket that sends pysip2-encoded requests and decodes replies with pysip2."""

    def __init__(self, target: SipTarget) -> None:
        self.sock = socket.create_connection((target.host, target.port), timeout=10)
        self.buffer = b""
        self.sequence = 0

    def exchange(self, message: Any) -> Any:
        frame = pysip2.encode_message(
            message, sequence_number=self.sequence, checksum=True, encoding="utf-8"
        )
        self.sequence = (self.sequence + 1) % 10
        self.sock.sendall(frame)
        while b"\r" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, "the server closed the connection"
            self.buffer += chunk
        reply, _, self.buffer = self.buffer.partition(b"\r")
        return pysip2.decode_message(reply + b"\r", encoding="utf-8")

    def close(self) -> None:
        self.sock.close()


@pytest_twisted.inlineCallbacks
def test_pysip2_strict_codec_accepts_every_reply(sip_target: SipTarget) -> Any:
    """Each reply of a session decodes under pysip2's strict rules, checksum too."""

    def session() -> list[Any]:
        connection = _PysipConnection(sip_target)
        now = _now18()
        common = {"institution_id": INSTITUTION, "terminal_password": ""}
        try:
            return [
                connection.exchange(
                    pysip2.LoginRequest(
                        uid_algorithm="0",
                        pwd_algorithm="0",
                        login_user_id=LOGIN,
                        login_password=PASSWORD,
                        location_code=LOCATION,
                    )
                ),
                connection.exchange(
                    pysip2.SCStatusRequest(
                        status_code="0", max_print_width="080", protocol_version="2.00"
                    )
                ),
                connection.exchange(
                    pysip2.PatronStatusRequest(
                        language="001",
                        transaction_date=now,
                        patron_identifier=BEN,
                        patron_password=PIN,
                        **common,
                    )
                ),
                connection.exchange(
                    pysip2.CheckoutRequest(
                        sc_renewal_policy="N",
                        no_block="N",
                        transaction_date=now,
                        nb_due_date=now,
                        patron_identifier=BEN,
                        item_identifier=ITEMS[1],
                        **common,
                    )
                ),
                connection.exchange(
                    pysip2.PatronInformationRequest(
                        language="001",
                        transaction_date=now,
                        summary="  Y       ",
                        patron_identifier=BEN,
                        patron_password=PIN,
                        **common,
                    )
                ),
                connection.exchange(
                    pysip2.ItemInformationRequest(
                        transaction_date=now, item_identifier=ITEMS[1], **common
                    )
                ),
                connection.exchange(
                    pysip2.CheckinRequest(
                        no_block="N",
                        transaction_date=now,
                        return_date=now,
                        current_location=LOCATION,
                        item_identifier=ITEMS[1],
                        **common,
                    )
                ),
                connection.exchange(
                    pysip2.EndPatronSessionRequest(
                        transaction_date=now, patron_identifier=BEN, **common
                    )
                ),
            ]
        finally:
            connection.close()

    replies = yield threads.deferToThread(session)
    login, status, patron, checkout, info, item, checkin, end = (
        reply.message for reply in replies
    )

    assert "1" == login.ok
    assert "Y" == status.online_status
    assert INSTITUTION == status.institution_id
    assert "Y" == patron.valid_patron
    assert "Ben Lindqvist" == patron.personal_name
    assert "1" == checkout.ok
    assert ITEMS[1] == checkout.item_identifier
    assert "0001" == info.charged_items_count
    assert [ITEMS[1]] == list(info.charged_items)
    assert "04" == item.circulation_status
    assert "1" == checkin.ok
    assert "Y" == end.end_session
    # Every reply echoed the request's sequence number.
    assert list(range(8)) == [reply.sequence_number for reply in replies]


def _checkout_reply(
    target: SipTarget, tmp_path: Path, patron: str, item: str, pin: str
) -> Any:
    client = _sip2_client(target, tmp_path, checksums=True)
    try:
        client.get_response(client.sip_login_request(LOGIN, PASSWORD))
        client.patron, client.patronpwd = patron, pin
        return client.sip_checkout_response(
            client.get_response(client.sip_checkout_request(item))
        )
    finally:
        client.disconnect()


@pytest.mark.parametrize(
    ("patron", "item", "pin", "why"),
    [
        ("29999999999999", ITEMS[2], PIN, "not recognised"),
        (ADA, "39999999999999", PIN, "not recognised"),
        (ADA, ITEMS[2], "0000", "PIN does not match"),
        (EXPIRED, ITEMS[2], PIN, "expired"),
        (BLOCKED, ITEMS[2], PIN, "blocked"),
        (ADA, REFERENCE_ITEM, PIN, "cannot be borrowed"),
    ],
    ids=["unknown-patron", "unknown-item", "wrong-pin", "expired", "blocked", "ref"],
)
@pytest_twisted.inlineCallbacks
def test_refused_checkout_says_why(
    sip_target: SipTarget, tmp_path: Path, patron: str, item: str, pin: str, why: str
) -> Any:
    """A refusal is ok=0, nothing to desensitise, and a screen message saying why."""
    reply = yield threads.deferToThread(
        _checkout_reply, sip_target, tmp_path, patron, item, pin
    )

    assert "0" == reply["fixed"]["Ok"]
    assert "N" == reply["fixed"]["Desensitize"]
    assert why in " ".join(_fields(reply)["AF"])


@pytest_twisted.inlineCallbacks
def test_wrong_pin_checkout_carries_cq_n(sip_target: SipTarget, tmp_path: Path) -> Any:
    """A wrong PIN is also flagged with CQ N, which kiosks test for."""
    reply = yield threads.deferToThread(
        _checkout_reply, sip_target, tmp_path, ADA, ITEMS[2], "9999"
    )

    assert ["N"] == _fields(reply)["CQ"]


@pytest_twisted.inlineCallbacks
def test_item_on_loan_to_someone_else_is_refused(
    sip_target: SipTarget, tmp_path: Path
) -> Any:
    """A second patron cannot check out an item that is on loan to the first."""
    first = yield threads.deferToThread(
        _checkout_reply, sip_target, tmp_path, ADA, ITEMS[3], PIN
    )
    second = yield threads.deferToThread(
        _checkout_reply, sip_target, tmp_path, BEN, ITEMS[3], PIN
    )

    assert "1" == first["fixed"]["Ok"]
    assert "0" == second["fixed"]["Ok"]
    assert "on loan to someone else" in " ".join(_fields(second)["AF"])


@pytest_twisted.inlineCallbacks
def test_patron_at_the_loan_limit_is_refused(
    sip_target: SipTarget, tmp_path: Path
) -> Any:
    """Adults may hold three loans (the test library's rule); the fourth is refused."""
    replies = []
    for item in ITEMS[4:8]:
        reply = yield threads.deferToThread(
            _checkout_reply, sip_target, tmp_path, BEN, item, PIN
        )
        replies.append(reply)

    assert ["1", "1", "1", "0"] == [reply["fixed"]["Ok"] for reply in replies]
    assert "as many items as you may" in " ".join(_fields(replies[3])["AF"])
