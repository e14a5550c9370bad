"""The server's behaviour on the wire, tested with frames written out byte by byte.

Every request here is a bytes literal (or built from one with `with_trailer`),
so the server is tested against frames checked by hand against the SIP2 2.00
wire format, not against our own encoder. Each test runs on a real server on
loopback, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import re
import socket
import time
from datetime import datetime
from typing import Any

import pytest_twisted
import sqlalchemy as sa
from twisted.internet import threads

from ils.models import CirculationLog, Item, Loan, LoanEvent
from tests.sip2server.conftest import ADA, ITEMS, SipTarget

# 93: UID and PWD algorithm "0" "0", then CN login, CO password, CP location.
LOGIN_FRAME = b"9300CNkiosk1|COkiosk-secret|CPNORTH|\r"
WRONG_LOGIN_FRAME = b"9300CNkiosk1|COnot-the-secret|CPNORTH|\r"
# 99: status code 0, max print width 030, protocol version 2.00.
STATUS_FRAME = b"9900302.00\r"

# How long any one reply may take before the test fails instead of hanging.
REPLY_TIMEOUT = 15.0

_UPPER_HEX4 = re.compile(rb"[0-9A-F]{4}")


def az(covered: bytes) -> bytes:
    """The AZ value for `covered`: two's complement of the 16-bit byte sum, 4 hex."""
    return b"%04X" % (-sum(covered) & 0xFFFF)


def with_trailer(body: bytes, sequence: int) -> bytes:
    """`body` with `AY<sequence>AZ<checksum>` appended (no terminator)."""
    covered = body + b"AY%dAZ" % sequence
    return covered + az(covered)


def sip_now() -> bytes:
    """A SIP2 date for now, YYYYMMDDZZZZHHMMSS with four blanks for local time."""
    return datetime.now().strftime("%Y%m%d    %H%M%S").encode("ascii")


def checkout_body(patron: str, item: str, date: bytes | None = None) -> bytes:
    """An 11 without terminator: renewal policy N, no block N, blank nb due date."""
    return (
        b"11NN"
        + (date or sip_now())
        + b" " * 18
        + b"AOCITY|AA"
        + patron.encode("ascii")
        + b"|AB"
        + item.encode("ascii")
        + b"|AC|"
    )


def screen_messages(payload: bytes) -> list[str]:
    """The AF fields of a reply payload, read straight off the bytes."""
    return [m.decode("utf-8") for m in re.findall(rb"\|AF([^|]*)(?=\|)", payload)]


class RawTerminal:
    """A blocking socket that sends raw bytes and cuts raw replies at CR or LF."""

    def __init__(self, target: SipTarget, *, timeout: float = REPLY_TIMEOUT) -> None:
        self.sock = socket.create_connection((target.host, target.port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self._buffer = bytearray()

    def __enter__(self) -> RawTerminal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    @property
    def unread(self) -> bytes:
        """Bytes received but not yet returned as a reply."""
        return bytes(self._buffer)

    def send(self, data: bytes) -> None:
        """Write `data` in one call."""
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """The next reply's payload, without its terminator (CR, CRLF or LF)."""
        deadline = time.monotonic() + self.timeout
        while True:
            # An LF left over from a CRLF cut at its CR belongs to the reply before.
            while self._buffer[:1] == b"\n":
                del self._buffer[:1]
            found = (self._buffer.find(b"\r"), self._buffer.find(b"\n"))
            ends = [index for index in found if index >= 0]
            if ends:
                end = min(ends)
                payload = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return payload
            if time.monotonic() > deadline:
                raise TimeoutError(f"no whole reply; have {bytes(self._buffer)!r}")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(
                    f"server closed the connection; have {bytes(self._buffer)!r}"
                )
            self._buffer += chunk

    def exchange(self, frame: bytes) -> bytes:
        """Send one frame and return the payload of the reply to it."""
        self.send(frame)
        return self.reply()

    def login(self) -> None:
        """Log in as the test kiosk; the reply must be exactly 941."""
        answer = self.exchange(LOGIN_FRAME)
        assert b"941" == answer, answer

    def reply_then_close(self, frame: bytes) -> bytes:
        """Send `frame`, then every byte the server sends until it closes.

        The first reply is awaited before our side shuts down, so the server has
        written it whole; what follows up to EOF is its exact terminator.
        """
        self.send(frame)
        while b"\r" not in self._buffer and b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed before replying"
            self._buffer += chunk
        self.sock.shutdown(socket.SHUT_WR)
        self.wait_for_close()
        return bytes(self._buffer)

    def wait_for_close(self) -> bool:
        """Read until the server closes (True) or the timeout passes (False)."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
            if not chunk:
                return True
            self._buffer += chunk
        return False


def in_thread(function: Any, *args: Any) -> Any:
    """Run blocking client code off the reactor, which the server needs."""
    return threads.deferToThread(function, *args)


def test_checksum_helper_agrees_with_published_examples() -> None:
    """The test's own AZ helper gives the values worked out by hand and published."""
    # 9+6+A+Z = 0x39+0x36+0x41+0x5A = 0x10A; 0x10000 - 0x10A = 0xFEF6.
    assert b"FEF6" == az(b"96AZ")
    # FOLIO edge-sip2's parser test: a login whose valid checksum is F594.
    assert b"9300CNuser_id|COpassw0rd|AY1AZF594" == with_trailer(
        b"9300CNuser_id|COpassw0rd|", 1
    )


# --- bad frames get 96, and the connection keeps serving ---------------------------


@pytest_twisted.inlineCallbacks
def test_bad_checksum_is_answered_with_96_and_the_connection_serves_on(
    sip_target: SipTarget,
) -> Any:
    """A 99 whose AZ is off by one gets 96 with AZ; the next good 99 gets its 98."""

    def talk() -> tuple[bytes, bytes]:
        good = with_trailer(b"9900302.00", 1)
        bad = good[:-1] + (b"0" if good[-1:] != b"0" else b"1")
        with RawTerminal(sip_target) as terminal:
            return terminal.exchange(bad + b"\r"), terminal.exchange(STATUS_FRAME)

    resend, status = yield in_thread(talk)

    # 96 has no sequence number; with error detection it carries AZ only.
    assert b"96AZFEF6" == resend
    assert status.startswith(b"98")


@pytest_twisted.inlineCallbacks
def test_unknown_commands_and_garbled_frames_get_96(sip_target: SipTarget) -> Any:
    """Unknown codes and short or garbled fixed parts each get a plain 96."""
    bad_frames = [
        b"XX0000",
        b"42Y20260101    120000AOCITY|",
        b"ab",
        b"9",
        b"99",
        # 99 with a seven-character fixed part (one short).
        b"990302.0",
        # 99 with letters where the print width's digits go.
        b"990ABC2.00",
        # 11 cut off in the middle of the transaction date.
        b"11NN2026010",
        # 93 with a variable field that has no two-letter code.
        b"9300CNkiosk1|C|",
        b"\x00\x01\x02",
    ]

    def talk() -> list[tuple[bytes, bytes, bytes]]:
        seen = []
        with RawTerminal(sip_target) as terminal:
            for frame in bad_frames:
                answer = terminal.exchange(frame + b"\r")
                status = terminal.exchange(STATUS_FRAME)
                seen.append((frame, answer, status[:2]))
        return seen

    seen = yield in_thread(talk)

    assert [(frame, b"96", b"98") for frame in bad_frames] == seen


@pytest_twisted.inlineCallbacks
def test_fee_hold_and_renewal_requests_get_their_own_responses(
    sip_target: SipTarget,
) -> Any:
    """Fee paid, hold, renew and renew all are answered with 38, 16, 30 and 66."""
    now = sip_now()
    patron = ADA.encode("ascii")
    item = ITEMS[0].encode("ascii")
    requests = [
        # 37: date, fee type 01, payment type 00, currency GBP, then BV AO AA.
        b"37" + now + b"0100GBPBV1.00|AOCITY|AA" + patron + b"|",
        # 15: hold mode +, date, then AO AA AB.
        b"15+" + now + b"AOCITY|AA" + patron + b"|AB" + item + b"|",
        # 29: renewal policy N, no block N, date, nb due date blank.
        b"29NN" + now + b" " * 18 + b"AOCITY|AA" + patron + b"|AB" + item + b"|",
        # 65: date, AO AA.
        b"65" + now + b"AOCITY|AA" + patron + b"|",
    ]

    def talk() -> list[bytes]:
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            answers = [terminal.exchange(frame + b"\r")[:2] for frame in requests]
            answers.append(terminal.exchange(STATUS_FRAME)[:2])
        return answers

    answers = yield in_thread(talk)

    assert [b"38", b"16", b"30", b"66", b"98"] == answers


# --- the session rules: login first ------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_status_before_login_is_answered_with_98(sip_target: SipTarget) -> Any:
    """A 99 before any 93 gets a 98 (online, Y in the first position)."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            return terminal.exchange(STATUS_FRAME)

    status = yield in_thread(talk)

    assert b"98Y" == status[:3]


@pytest_twisted.inlineCallbacks
def test_checkout_before_login_is_refused_with_a_reason(sip_target: SipTarget) -> Any:
    """An 11 before login gets a 12 with ok 0 and an AF saying to log in."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            return terminal.exchange(checkout_body(ADA, ITEMS[0]) + b"\r")

    answer = yield in_thread(talk)

    # 12, ok 0, renewal ok N, magnetic media U, desensitize N.
    assert b"120NUN" == answer[:6]
    assert any("logged in" in text for text in screen_messages(answer)), answer


@pytest_twisted.inlineCallbacks
def test_wrong_login_gets_940_and_a_later_right_one_941(sip_target: SipTarget) -> Any:
    """A wrong password gets 940; the right one on the same connection gets 941."""

    def talk() -> list[bytes]:
        with RawTerminal(sip_target) as terminal:
            return [
                terminal.exchange(WRONG_LOGIN_FRAME),
                terminal.exchange(LOGIN_FRAME),
            ]

    answers = yield in_thread(talk)

    assert [b"940", b"941"] == answers


@pytest_twisted.inlineCallbacks
def test_failed_login_ends_an_earlier_login(sip_target: SipTarget) -> Any:
    """After 941 then 940 on one connection, a checkout is refused as not logged in."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            assert b"940" == terminal.exchange(WRONG_LOGIN_FRAME)
            return terminal.exchange(checkout_body(ADA, ITEMS[0]) + b"\r")

    answer = yield in_thread(talk)

    assert b"120" == answer[:3]
    assert any("logged in" in text for text in screen_messages(answer)), answer


# --- terminators and framing -------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_reply_ends_with_the_terminator_the_request_used(sip_target: SipTarget) -> Any:
    """CR gets CR, CRLF gets CRLF and LF gets LF (the default mirrors the client)."""
    endings = [b"\r", b"\r\n", b"\n"]

    def talk() -> list[bytes]:
        received = []
        for ending in endings:
            with RawTerminal(sip_target) as terminal:
                received.append(terminal.reply_then_close(b"9900302.00" + ending))
        return received

    received = yield in_thread(talk)

    for ending, data in zip(endings, received, strict=True):
        body = data[: -len(ending)]
        assert data.endswith(ending), (ending, data)
        assert body.startswith(b"98"), data
        assert b"\r" not in body, data
        assert b"\n" not in body, data


@pytest_twisted.inlineCallbacks
def test_frame_sent_one_byte_at_a_time_is_answered_once(sip_target: SipTarget) -> Any:
    """A 93 dribbled one byte per TCP segment gets exactly one 941."""

    def talk() -> list[bytes]:
        with RawTerminal(sip_target) as terminal:
            for byte in LOGIN_FRAME:
                terminal.send(bytes([byte]))
                # Only to keep the bytes in separate segments (TCP_NODELAY is on).
                time.sleep(0.002)
            first = terminal.reply()
            # Nothing else was queued: the next reply is the 98 to this 99.
            second = terminal.exchange(STATUS_FRAME)
        return [first, second[:2]]

    answers = yield in_thread(talk)

    assert [b"941", b"98"] == answers


@pytest_twisted.inlineCallbacks
def test_crlf_split_between_segments_is_one_frame(sip_target: SipTarget) -> Any:
    """A CR and its LF in separate segments end one frame: one reply, not two."""

    def talk() -> list[bytes]:
        with RawTerminal(sip_target) as terminal:
            terminal.send(b"9900302.00\r")
            first = terminal.reply()
            terminal.send(b"\n")
            second = terminal.exchange(LOGIN_FRAME)
        return [first[:2], second]

    answers = yield in_thread(talk)

    assert [b"98", b"941"] == answers


@pytest_twisted.inlineCallbacks
def test_frames_in_one_write_are_answered_in_order(sip_target: SipTarget) -> Any:
    """A 99, a bad-checksum 99 and a 93 in one write get 98, 96 and 941, in order."""
    bad = with_trailer(b"9900302.00", 2)[:-4] + b"0000"

    def talk() -> list[bytes]:
        with RawTerminal(sip_target) as terminal:
            terminal.send(STATUS_FRAME + bad + b"\r" + LOGIN_FRAME)
            return [terminal.reply()[:2], terminal.reply(), terminal.reply()]

    answers = yield in_thread(talk)

    assert [b"98", b"96AZFEF6", b"941"] == answers


# --- error detection ---------------------------------------------------------------


@pytest_twisted.inlineCallbacks
def test_request_with_ay_az_gets_a_reply_with_its_sequence_and_checksum(
    sip_target: SipTarget,
) -> Any:
    """A 99 with AY3 gets a 98 ending AY3AZ and the right checksum of its own bytes."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            return terminal.exchange(with_trailer(b"9900302.00", 3) + b"\r")

    status = yield in_thread(talk)

    covered, sent = status[:-4], status[-4:]
    assert status.startswith(b"98")
    assert covered.endswith(b"|AY3AZ"), status
    assert _UPPER_HEX4.fullmatch(sent), status
    assert 0 == (sum(covered) + int(sent, 16)) & 0xFFFF, status
    assert az(covered) == sent


@pytest_twisted.inlineCallbacks
def test_request_without_ay_az_gets_a_reply_without_them(sip_target: SipTarget) -> Any:
    """A 99 and a 93 without AY/AZ get replies with no trailer at all."""

    def talk() -> list[bytes]:
        with RawTerminal(sip_target) as terminal:
            return [terminal.exchange(STATUS_FRAME), terminal.exchange(LOGIN_FRAME)]

    status, login = yield in_thread(talk)

    # Every variable field of 98 ends with "|", so nothing may follow the last one.
    assert status.endswith(b"|"), status
    assert not re.search(rb"AY\dAZ", status), status
    assert b"941" == login


@pytest_twisted.inlineCallbacks
def test_97_gets_the_previous_reply_byte_for_byte(sip_target: SipTarget) -> Any:
    """After a 98, a 97 (with its AZ FEF5) is answered with that same 98."""

    def talk() -> tuple[bytes, bytes, bytes]:
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            status = terminal.exchange(STATUS_FRAME)
            plain = terminal.exchange(b"97\r")
            # 9+7+A+Z = 0x39+0x37+0x41+0x5A = 0x10B; 0x10000 - 0x10B = 0xFEF5.
            checked = terminal.exchange(b"97AZFEF5\r")
        return status, plain, checked

    status, plain, checked = yield in_thread(talk)

    assert status.startswith(b"98")
    assert status == plain
    assert status == checked


@pytest_twisted.inlineCallbacks
def test_97_with_nothing_to_replay_gets_96(sip_target: SipTarget) -> Any:
    """A 97 as the very first frame has no reply to repeat, so it gets 96."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            return terminal.exchange(b"97\r")

    answer = yield in_thread(talk)

    assert b"96" == answer


def _loans_and_log(target: SipTarget, barcode: str) -> tuple[list[Any], list[Any]]:
    with target.library.database.read() as session:
        item_id = session.scalar(sa.select(Item.id).where(Item.barcode == barcode))
        loans = session.execute(
            sa.select(Loan.returned_at, Loan.renewals).where(Loan.item_id == item_id)
        ).all()
        events = session.scalars(
            sa.select(CirculationLog.event).where(CirculationLog.item_id == item_id)
        ).all()
    return list(loans), list(events)


@pytest_twisted.inlineCallbacks
def test_retransmitted_checkout_is_answered_from_memory(sip_target: SipTarget) -> Any:
    """The same 11 twice with the same AY and AZ: same reply, one loan, one log row."""

    def talk() -> tuple[bytes, bytes, Any]:
        frame = with_trailer(checkout_body(ADA, ITEMS[5]), 4) + b"\r"
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            first = terminal.exchange(frame)
            again = terminal.exchange(frame)
        return first, again, _loans_and_log(sip_target, ITEMS[5])

    first, again, (loans, events) = yield in_thread(talk)

    # 12, ok 1, renewal ok N (a fresh loan, not a renewal).
    assert b"121N" == first[:4], first
    assert first == again
    assert [(None, 0)] == [(row.returned_at, row.renewals) for row in loans]
    assert [LoanEvent.CHECKOUT] == events


@pytest_twisted.inlineCallbacks
def test_different_checkouts_with_equal_ay_and_az_are_both_run(
    sip_target: SipTarget,
) -> Any:
    """Two 11s whose AY and AZ agree but whose bytes differ are not a retransmission."""
    # Item ...0001 and item ...0010 have the same byte sum, so with the same AY,
    # patron and transaction date their frames have the same checksum.
    first_item, second_item = ITEMS[0], ITEMS[9]
    assert sum(first_item.encode()) == sum(second_item.encode())

    def frame(item: str) -> bytes:
        body = checkout_body(ADA, item, date=b"20261204    120000")
        return with_trailer(body, 0) + b"\r"

    def talk() -> tuple[bytes, bytes, Any, Any]:
        one, two = frame(first_item), frame(second_item)
        # The premise: a server keyed on (AY, AZ) alone cannot tell them apart.
        assert one[-10:] == two[-10:]
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            first = terminal.exchange(one)
            second = terminal.exchange(two)
        return (
            first,
            second,
            _loans_and_log(sip_target, first_item),
            _loans_and_log(sip_target, second_item),
        )

    first, second, (first_loans, _), (second_loans, _) = yield in_thread(talk)

    assert b"121N" == first[:4], first
    assert b"121N" == second[:4], second
    assert f"|AB{second_item}|".encode() in second
    assert 1 == len(first_loans)
    assert 1 == len(second_loans)


@pytest_twisted.inlineCallbacks
def test_same_checkout_with_a_new_sequence_is_a_new_request(
    sip_target: SipTarget,
) -> Any:
    """The same 11 with AY5 after AY4 is run again; with renewal policy Y and a due
    date that cannot move yet, it confirms the loan without using a renewal."""

    def talk() -> tuple[bytes, bytes, Any]:
        body = b"11YN" + checkout_body(ADA, ITEMS[6])[4:]
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            first = terminal.exchange(with_trailer(body, 4) + b"\r")
            second = terminal.exchange(with_trailer(body, 5) + b"\r")
        return first, second, _loans_and_log(sip_target, ITEMS[6])

    first, second, (loans, events) = yield in_thread(talk)

    assert b"121N" == first[:4], first
    # ok 1, renewal ok N: the same minute gives the same due date, so the core
    # confirms the loan and counts no renewal (issue #4, fresh-user finding 3).
    assert b"121N" == second[:4], second
    assert [(None, 0)] == [(row.returned_at, row.renewals) for row in loans]
    assert [LoanEvent.CHECKOUT] == events


@pytest_twisted.inlineCallbacks
def test_repeated_checkout_without_renewal_policy_confirms_the_loan(
    sip_target: SipTarget,
) -> Any:
    """With SC renewal policy N a repeated 11 is answered ok and renews nothing."""

    def talk() -> tuple[bytes, bytes, Any]:
        body = checkout_body(ADA, ITEMS[7])
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            first = terminal.exchange(with_trailer(body, 4) + b"\r")
            second = terminal.exchange(with_trailer(body, 5) + b"\r")
        return first, second, _loans_and_log(sip_target, ITEMS[7])

    first, second, (loans, events) = yield in_thread(talk)

    assert b"121N" == first[:4], first
    assert b"121N" == second[:4], second
    assert [(None, 0)] == [(row.returned_at, row.renewals) for row in loans]
    assert [LoanEvent.CHECKOUT] == events


# --- TLS on the plain port and oversize frames -------------------------------------


def client_hello() -> bytes:
    """A plausible TLS 1.2 ClientHello record whose body holds CR and LF bytes."""
    random = bytes(range(0x00, 0x20))  # 32 bytes, 0x0A and 0x0D among them
    ciphers = b"\x13\x01\x13\x02\xc0\x2f\x00\x0d"
    server_name = b"\x00\x00\x00\x0e\x00\x0c\x00\x00\x09localhost"
    body = (
        b"\x03\x03"
        + random
        + b"\x00"
        + len(ciphers).to_bytes(2, "big")
        + ciphers
        + b"\x01\x00"
        + len(server_name).to_bytes(2, "big")
        + server_name
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


@pytest_twisted.inlineCallbacks
def test_tls_client_hello_on_the_plain_port_is_closed(sip_target: SipTarget) -> Any:
    """A ClientHello gets the connection closed; a new connection then works."""
    hello = client_hello()
    assert b"\r" in hello[5:]
    assert b"\n" in hello[5:]

    def talk() -> tuple[bool, bytes, bytes]:
        with RawTerminal(sip_target) as terminal:
            terminal.send(hello)
            closed = terminal.wait_for_close()
            leftover = terminal.unread
        with RawTerminal(sip_target) as terminal:
            status = terminal.exchange(STATUS_FRAME)
        return closed, leftover, status

    closed, leftover, status = yield in_thread(talk)

    assert closed
    assert b"" == leftover
    assert status.startswith(b"98")


@pytest_twisted.inlineCallbacks
def test_oversize_frame_gets_96_and_the_next_frame_is_read(
    sip_target: SipTarget,
) -> Any:
    """20,000 bytes then CR get 96, and the frames after it are answered normally."""
    huge = b"99" + b"0" * 20_000 + b"\r"

    def talk() -> list[bytes]:
        with RawTerminal(sip_target) as terminal:
            answers = [terminal.exchange(huge), terminal.exchange(STATUS_FRAME)[:2]]
            # The same again, with the good frame in the same write.
            terminal.send(huge + LOGIN_FRAME)
            answers += [terminal.reply(), terminal.reply()]
        return answers

    answers = yield in_thread(talk)

    assert [b"96", b"98", b"96", b"941"] == answers


def _raw_reply(terminal: RawTerminal) -> bytes:
    """The next reply with its terminator, read straight off the socket."""
    deadline = time.monotonic() + terminal.timeout
    data = b""
    while not data.endswith((b"\r", b"\n")) and time.monotonic() < deadline:
        data += terminal.sock.recv(1)
    if data.endswith(b"\r"):
        # A CRLF reply's LF may still be on its way; wait for it briefly.
        terminal.sock.settimeout(0.5)
        try:
            data += terminal.sock.recv(1)
        except TimeoutError:
            pass
        finally:
            terminal.sock.settimeout(terminal.timeout)
    return data


@pytest_twisted.inlineCallbacks
def test_crlf_peer_whose_lf_lags_still_gets_crlf(sip_target: SipTarget) -> Any:
    """Once a peer has shown it ends with CRLF, a frame cut at CR is answered CRLF."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            terminal.send(b"9900302.00\r\n")
            _raw_reply(terminal)
            # The CR arrives alone; its LF follows in a later segment.
            terminal.send(b"9900302.00\r")
            reply = _raw_reply(terminal)
            terminal.send(b"\n")
        return reply

    reply = yield in_thread(talk)

    assert reply.startswith(b"98")
    assert reply.endswith(b"|\r\n")


@pytest_twisted.inlineCallbacks
def test_latin1_request_is_answered_in_latin1(sip_target: SipTarget) -> Any:
    """A barcode sent in Latin-1 to a UTF-8 account comes back as the same bytes."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            return terminal.exchange(
                b"2300120261204    120000AOCITY|AAM\xfcller|AC|AD1234|\r"
            )

    reply = yield in_thread(talk)

    assert reply.startswith(b"24")
    assert b"|AAM\xfcller|" in reply


@pytest_twisted.inlineCallbacks
def test_az_inside_a_value_does_not_make_96_carry_a_checksum(
    sip_target: SipTarget,
) -> Any:
    """Only a trailer at the end of the frame asks for AZ; 'AZ' in a value does not."""

    def talk() -> tuple[bytes, bytes]:
        with RawTerminal(sip_target) as terminal:
            plain = terminal.exchange(b"XXAZTEC|\r")
            checked = terminal.exchange(b"XXAZTEC|AZ1234\r")
        return plain, checked

    plain, checked = yield in_thread(talk)

    assert b"96" == plain
    assert b"96AZFEF6" == checked


@pytest_twisted.inlineCallbacks
def test_logins_are_logged_with_their_outcome_and_no_password(
    sip_target: SipTarget,
) -> Any:
    """An operator sees refused and accepted logins by name, never the password."""
    from twisted.logger import globalLogPublisher  # noqa: PLC0415

    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)

    def talk() -> None:
        with RawTerminal(sip_target) as terminal:
            assert b"940" == terminal.exchange(WRONG_LOGIN_FRAME)
            terminal.login()

    try:
        yield in_thread(talk)
    finally:
        globalLogPublisher.removeObserver(seen.append)

    logins = [
        (event["outcome"], event["login"])
        for event in seen
        if event.get("log_format", "").startswith("login ")
    ]
    assert [("refused", "kiosk1"), ("accepted", "kiosk1")] == logins
    rendered = " ".join(repr(event) for event in seen)
    assert "not-the-secret" not in rendered
    assert "kiosk-secret" not in rendered


@pytest_twisted.inlineCallbacks
def test_patron_information_with_a_wrong_pin_reveals_nothing(
    sip_target: SipTarget,
) -> Any:
    """A wrong PIN gets BL Y and CQ N, but no name, items, e-mail or expiry."""

    def talk() -> bytes:
        with RawTerminal(sip_target) as terminal:
            terminal.login()
            terminal.exchange(with_trailer(checkout_body(ADA, ITEMS[0]), 1) + b"\r")
            return terminal.exchange(
                b"63001"
                + sip_now()
                + b"  Y       AOCITY|AA"
                + ADA.encode()
                + b"|AC|AD9999|\r"
            )

    reply = yield in_thread(talk)

    assert reply.startswith(b"64")
    assert b"|BLY|" in reply
    assert b"|CQN|" in reply
    assert b"|AE|" in reply
    for code in (b"|AU", b"|BE", b"|PA", b"|AT"):
        assert code not in reply
