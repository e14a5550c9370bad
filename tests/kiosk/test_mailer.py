"""Email receipts: the kiosk mails a session's receipt to a real SMTP server.

The SMTP server is Twisted's own server side (`twisted.mail.smtp.ESMTP`),
listening on loopback in the test's reactor; the kiosk's view model runs
against the real SIP2 server with the demo library, whose patrons have
addresses under `.invalid` (nothing could ever leave the machine).
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer, protocol
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.mail import smtp
from zope.interface import implementer

from ils.models import Patron as CorePatron
from kiosk.config import KioskConfigError, load_config, parse_config
from kiosk.i18n import LOCALE_DIR, Catalogues
from kiosk.mailer import (
    MESSAGES,
    ReceiptMailer,
    mask_address,
    receipt_address,
    receipt_message,
)
from kiosk.model import Receipt, Screen
from kiosk.pocompile import read_po
from kiosk.present import Presenter
from kiosk.transactions import Action, ItemOutcome, Result
from kiosk.wording import Refusal, Wording
from tests.conftest import REPO_ROOT
from tests.kiosk.conftest import ITEMS, PATRON, LiveServer, branch_today
from tests.kiosk.test_session import Kiosk, sign_in, start_kiosk

# The demo gives patron serial 1 (card 21234000000018) this address.
PATRON_ADDRESS = "patron1@demo.invalid"
SENDER = "selfcheck@library.test"


# -- a real SMTP server on loopback --------------------------------------------


@dataclass
class Mail:
    """One message as the server took it."""

    sender: str
    recipient: str
    data: bytes


@dataclass
class Mailbox:
    """What the test SMTP server received, and whether it refuses recipients."""

    refuse_recipients: bool = False
    mails: list[Mail] = field(default_factory=list)
    waiting: list[defer.Deferred[Mail]] = field(default_factory=list)

    def arrived(self) -> defer.Deferred[Mail]:
        """Fires with the next message (at once if one has come already)."""
        if self.mails:
            return defer.succeed(self.mails[-1])
        waiting: defer.Deferred[Mail] = defer.Deferred()
        self.waiting.append(waiting)
        return waiting

    def take(self, mail: Mail) -> None:
        """A whole message has come."""
        self.mails.append(mail)
        for waiting in self.waiting:
            waiting.callback(mail)
        self.waiting.clear()


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, box: Mailbox, sender: str, recipient: str) -> None:
        self.box = box
        self.sender = sender
        self.recipient = recipient
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> defer.Deferred[None]:
        data = b"\n".join(self.lines) + b"\n"
        self.box.take(Mail(self.sender, self.recipient, data))
        return defer.succeed(None)

    def connectionLost(self) -> None:
        self.lines.clear()


@implementer(smtp.IMessageDelivery)
class Delivery:
    def __init__(self, box: Mailbox) -> None:
        self.box = box
        self.sender = ""

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:
        return b"Received: from the kiosk by the test server"

    def validateFrom(self, helo: Any, origin: smtp.Address) -> smtp.Address:
        self.sender = str(origin)
        return origin

    def validateTo(self, user: smtp.User) -> Any:
        if self.box.refuse_recipients:
            raise smtp.SMTPBadRcpt(user)
        recipient = str(user.dest)
        return lambda: _Message(self.box, self.sender, recipient)


class SmtpServer(protocol.ServerFactory):
    """Twisted's ESMTP server, delivering into a `Mailbox`."""

    def __init__(self, box: Mailbox) -> None:
        self.box = box

    def buildProtocol(self, addr: Any) -> smtp.ESMTP:
        server = smtp.ESMTP()
        server.delivery = Delivery(self.box)
        server.factory = self
        return server


class _Silent(protocol.Protocol):
    """A server that accepts the connection and never says a word."""


@pytest_twisted.async_yield_fixture
async def smtp_server() -> AsyncIterator[tuple[Mailbox, int]]:
    """A real SMTP server on a free loopback port, with its mailbox."""
    from twisted.internet import reactor  # noqa: PLC0415

    box = Mailbox()
    port = reactor.listenTCP(0, SmtpServer(box), interface="127.0.0.1")
    try:
        yield box, port.getHost().port
    finally:
        await defer.maybeDeferred(port.stopListening)


async def closed_port() -> int:
    """A loopback port on which nothing listens (a connection is refused)."""
    from twisted.internet import reactor  # noqa: PLC0415

    port = reactor.listenTCP(0, protocol.ServerFactory(), interface="127.0.0.1")
    number: int = port.getHost().port
    await defer.maybeDeferred(port.stopListening)
    return number


def email_section(port: int, **values: Any) -> dict[str, Any]:
    """An `[email]` table for a test SMTP server on loopback (no TLS)."""
    return {
        "host": "127.0.0.1",
        "port": port,
        "starttls": "off",
        "sender": SENDER,
        "timeout": 5.0,
        **values,
    }


@pytest_twisted.async_yield_fixture
async def kiosk_with_mail(
    live_server: LiveServer, tmp_path: Path, smtp_server: tuple[Mailbox, int]
) -> AsyncIterator[Kiosk]:
    """The kiosk online, with email receipts through the test SMTP server."""
    started = await start_kiosk(
        live_server,
        tmp_path,
        kiosk={"name": "Bibliothèque de démo"},
        services={"email_receipt": True},
        email=email_section(smtp_server[1]),
    )
    try:
        yield started
    finally:
        started.link.stop()
        started.journal.close()


async def borrow_and_finish(check: Any, *barcodes: str) -> None:
    """Sign in, borrow the items, and go to the finish screen."""
    await sign_in(check)
    check.choose(Action.BORROW)
    for barcode in barcodes:
        await check.scan(barcode)
    check.finish()


def body_of(mail: Mail) -> tuple[email.message.EmailMessage, str]:
    """The parsed message and its decoded plain-text body."""
    message = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    part = message.get_body(("plain",))
    assert part is not None
    return message, part.get_content()


# -- the whole way: a session's receipt reaches the SMTP server ----------------


@pytest_twisted.ensureDeferred
async def test_a_french_session_mails_its_receipt_with_the_card_masked(
    kiosk_with_mail: Kiosk, live_server: LiveServer, smtp_server: tuple[Mailbox, int]
) -> None:
    """The receipt goes to the patron's address, in French, with the masked
    card, the title and due date of the loan and the reason of the refusal."""
    box, _ = smtp_server
    check = kiosk_with_mail.check
    check.choose_language("fr")
    await borrow_and_finish(check, ITEMS[0], live_server.library.reference_item)
    assert Screen.FINISH is check.screen
    assert check.email_offered

    check.receipt(Receipt.EMAIL)

    # The session is over at once; the mail goes in the background.
    assert Screen.ATTRACT is check.screen
    assert check.patron is None
    mail = await box.arrived()
    message, body = body_of(mail)
    due = branch_today() + timedelta(days=21)
    assert PATRON_ADDRESS == mail.recipient
    assert SENDER == mail.sender
    assert PATRON_ADDRESS == message["To"]
    assert "Votre reçu : Bibliothèque de démo" == message["Subject"]
    assert "fr" == message["Content-Language"]
    assert "Carte : **********0018" in body
    assert PATRON not in body
    assert f"Pride and prejudice\n  Emprunté. À rendre le {due:%d/%m/%Y}.\n" in body
    assert (
        "  Ce document ne peut pas être emprunté. Renseignez-vous à l'accueil.\n"
        in body
    )
    assert "Effectués : 1. Non effectués : 1." in body
    assert check.mailer is not None
    await defer.DeferredList(list(check.mailer.pending))
    assert {"email receipts": "1 sent, 0 failed"} == check.mailer.status()


@pytest_twisted.ensureDeferred
async def test_an_unreachable_smtp_server_neither_blocks_nor_ends_badly(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """With nothing listening, the session still ends at once; the failure is
    logged with the address masked and counted on the staff screen."""
    started = await start_kiosk(
        live_server,
        tmp_path,
        services={"email_receipt": True},
        email=email_section(await closed_port()),
    )
    events: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        events.append(repr(event))

    globalLogPublisher.addObserver(observe)
    try:
        check = started.check
        await borrow_and_finish(check, ITEMS[0])
        check.receipt(Receipt.EMAIL)
        assert Screen.ATTRACT is check.screen
        assert check.mailer is not None
        outcomes = await defer.DeferredList(list(check.mailer.pending))
        status = check.staff_status()
    finally:
        globalLogPublisher.removeObserver(observe)
        started.link.stop()
        started.journal.close()

    assert [(True, False)] == outcomes
    assert "0 sent, 1 failed (unreachable)" == status["email receipts"]
    logged = "\n".join(events)
    assert "p***@***.invalid" in logged
    assert PATRON_ADDRESS not in logged
    assert PATRON not in logged


@pytest_twisted.ensureDeferred
async def test_a_recipient_refused_by_the_server_is_counted_as_failed(
    kiosk_with_mail: Kiosk, smtp_server: tuple[Mailbox, int]
) -> None:
    """A 550 for the recipient fails that receipt (SMTP 550 on the staff screen)."""
    box, _ = smtp_server
    box.refuse_recipients = True
    check = kiosk_with_mail.check
    await borrow_and_finish(check, ITEMS[0])

    check.receipt(Receipt.EMAIL)

    assert Screen.ATTRACT is check.screen
    assert check.mailer is not None
    outcomes = await defer.DeferredList(list(check.mailer.pending))
    assert [(True, False)] == outcomes
    assert [] == box.mails
    assert {"email receipts": "0 sent, 1 failed (SMTP 550)"} == check.mailer.status()


@pytest_twisted.ensureDeferred
async def test_a_silent_smtp_server_times_out_on_the_kiosks_clock(
    smtp_server: tuple[Mailbox, int],
) -> None:
    """A server that never greets fails the receipt after `timeout` seconds of
    the mailer's clock, not of the wall clock."""
    from twisted.internet import reactor  # noqa: PLC0415

    connected: defer.Deferred[None] = defer.Deferred()

    class Greeted(_Silent):
        def connectionMade(self) -> None:
            connected.callback(None)

    silent = protocol.ServerFactory.forProtocol(Greeted)
    port = reactor.listenTCP(0, silent, interface="127.0.0.1")
    clock = Clock()
    mailer = ReceiptMailer(
        parse_config(
            {
                "kiosk": {"institution": "DEMO", "branch": "MAIN"},
                "account": {"login": "k", "password": "p"},
                "email": email_section(port.getHost().port, timeout=20.0),
            },
            "<test>",
        ).email,
        reactor,
        words=Presenter(Catalogues(["en"]), Wording.load()),
        library_name="Kiosk",
        clock=clock,
    )
    try:
        sending = mailer.send(to=PATRON_ADDRESS, card=PATRON, rows=[], language="en")
        await connected
        # The client's side of the connection may come up a turn later: keep
        # the clock moving (by the timeout each time) until the send settles.
        while not sending.called:
            clock.advance(20.0)
            await defer.succeed(None)
            await _turn(reactor)
        assert sending.result is False
        assert "timeout" == mailer.problem
    finally:
        await defer.maybeDeferred(port.stopListening)


async def _turn(reactor: Any) -> None:
    from twisted.internet.task import deferLater  # noqa: PLC0415

    await deferLater(reactor, 0, lambda: None)


# -- when email is offered -----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_finish_screen_offers_no_email_without_an_address(
    kiosk_with_mail: Kiosk, live_server: LiveServer, smtp_server: tuple[Mailbox, int]
) -> None:
    """A patron whose record has no address is not offered email, and asking
    for it anyway sends nothing."""
    engine = sa.create_engine(live_server.library.url)
    with engine.begin() as connection:
        connection.execute(
            sa.update(CorePatron).where(CorePatron.barcode == PATRON).values(email=None)
        )
    engine.dispose()
    check = kiosk_with_mail.check
    await borrow_and_finish(check, ITEMS[0])
    assert Screen.FINISH is check.screen

    assert not check.email_offered
    check.receipt(Receipt.EMAIL)
    assert Screen.ATTRACT is check.screen
    assert check.mailer is None or not check.mailer.pending
    assert [] == smtp_server[0].mails


@pytest_twisted.ensureDeferred
async def test_email_is_not_offered_without_an_smtp_host(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """`services.email_receipt` alone (no `[email] host`) offers no email."""
    started = await start_kiosk(live_server, tmp_path, services={"email_receipt": True})
    try:
        await borrow_and_finish(started.check, ITEMS[0])
        assert Screen.FINISH is started.check.screen
        assert started.check.patron is not None
        assert PATRON_ADDRESS == started.check.patron.email
        assert not started.check.email_offered
        assert "email receipts" not in started.check.staff_status()
    finally:
        started.link.stop()
        started.journal.close()


# -- the message, the address and the configuration ----------------------------


def test_a_german_receipt_reads_line_by_line() -> None:
    """The whole German body: name, date, masked card, items oldest first, count."""
    words = Presenter(Catalogues(["de"]), Wording.load())
    rows = [
        ItemOutcome(
            action=Action.BORROW,
            barcode="31234000000115",
            result=Result.REFUSED,
            refusal=Refusal.ITEM_NOT_FOR_LOAN,
        ),
        ItemOutcome(
            action=Action.BORROW,
            barcode="31234000000016",
            result=Result.DONE,
            title="Effi Briest",
            due=date(2027, 1, 5),
        ),
    ]

    message = receipt_message(
        words,
        language="de",
        library_name="Stadtbücherei",
        sender=SENDER,
        to="leser@example.invalid",
        card="21234000000018",
        rows=rows,
        now=datetime(2026, 12, 15, 14, 30),
    )

    assert "Ihre Quittung: Stadtbücherei" == message["Subject"]
    assert "Stadtbücherei <selfcheck@library.test>" == str(message["From"])
    assert "auto-generated" == message["Auto-Submitted"]
    assert "utf-8" == message.get_content_charset()
    assert (
        "Stadtbücherei\n"
        "\n"
        "Datum: 15.12.2026 14:30\n"
        "Ausweis: **********0018\n"
        "\n"
        "Effi Briest\n"
        "  Ausgeliehen. Rückgabe bis 05.01.2027.\n"
        "\n"
        "Medium 31234000000115\n"
        "  Dieses Medium kann nicht ausgeliehen werden. "
        "Bitte fragen Sie an der Theke.\n"
        "\n"
        "Erledigt: 1. Nicht erledigt: 1.\n"
        "\n"
        "Diese Quittung wurde vom Selbstverbuchungsautomaten gesendet; "
        "bitte nicht antworten.\n"
    ) == message.get_content()


@pytest.mark.parametrize(
    ("sent", "usable"),
    [
        ("reader@example.org", "reader@example.org"),
        (" reader@example.org ", "reader@example.org"),
        ("a@example.org; b@example.org", "a@example.org"),
        ("a@example.org, b@example.org", "a@example.org"),
        ("", None),
        (None, None),
        ("no address", None),
        ("reader@example.org\r\nBcc: x@example.org", None),
        ("lectrice@exemple.fr>", None),
    ],
)
def test_only_a_plain_address_from_the_server_is_used(
    sent: str | None, usable: str | None
) -> None:
    """BE gives the first plain ASCII address, never a header or a second one."""
    assert usable == receipt_address(sent)


def test_addresses_are_masked_for_the_log() -> None:
    """Only the first letter and the top-level domain are left."""
    assert "p***@***.invalid" == mask_address("patron1@demo.invalid")
    assert "j***@***.org" == mask_address("jane.doe@mail.example.org")


@pytest.mark.parametrize("language", ["en", "fr", "de"])
def test_every_receipt_message_is_translated(language: str) -> None:
    """The mailer's own messages are in every shipped catalogue."""
    translated = read_po(LOCALE_DIR / language / "LC_MESSAGES" / "kiosk.po")
    assert [] == [message for message in MESSAGES if message not in translated]


def kiosk_toml(tmp_path: Path, email_table: str) -> Path:
    """A minimal kiosk file with the given `[email]` table."""
    path = tmp_path / "kiosk.toml"
    path.write_text(
        '[kiosk]\ninstitution = "DEMO"\nbranch = "MAIN"\n'
        '[account]\nlogin = "k"\npassword = "p"\n'
        "[email]\n" + email_table
    )
    return path


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('host = "mail.example.org"\n', "email: sender is required when host is set"),
        (
            'host = "mail.example.org"\nsender = "Library"\n',
            "email.sender: 'Library' is not a plain address like library@example.org",
        ),
        ('starttls = "maybe"\n', "email.starttls: Input should be 'required'"),
        ("port = 0\n", "email.port: "),
        ('port = "587"\n', "email.port: "),
        (
            'host = "mail.example.org"\nsender = "k@example.org"\n'
            'starttls = "if offered"\nusername = "kiosk"\npassword = "secret"\n',
            'email: a login needs starttls = "required"',
        ),
        (
            'host = "mail.example.org"\nsender = "k@example.org"\npassword = "x"\n',
            "email: password is set but username is not",
        ),
        (
            'host = "mail.example.org"\nsender = "k@example.org"\n'
            'ca_file = "nowhere/ca.pem"\n',
            "email.ca_file: no such file 'nowhere/ca.pem'",
        ),
    ],
)
def test_a_bad_email_table_names_the_key(
    tmp_path: Path, table: str, problem: str
) -> None:
    """Each mistake in `[email]` is reported with the file and the key."""
    path = kiosk_toml(tmp_path, table)

    with pytest.raises(KioskConfigError) as raised:
        load_config(path)

    assert f"{path}: {problem}" in str(raised.value)


def test_a_login_to_a_loopback_relay_may_go_without_tls(tmp_path: Path) -> None:
    """A relay on this machine may take a login without STARTTLS."""
    path = kiosk_toml(
        tmp_path,
        'host = "127.0.0.1"\nport = 25\nsender = "k@example.org"\n'
        'starttls = "off"\nusername = "kiosk"\npassword = "secret"\n',
    )

    assert "kiosk" == load_config(path).email.username


def test_the_shipped_example_sends_no_mail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """config/kiosk.toml leaves email off: no host and email receipts disabled."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "var").mkdir()
    config = load_config(REPO_ROOT / "config" / "kiosk.toml")

    assert "" == config.email.host
    assert not config.services.email_receipt
    assert "required" == config.email.starttls
