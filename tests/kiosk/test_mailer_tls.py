"""Email receipts over STARTTLS with a login, against Twisted's ESMTP server.

The server on loopback has a throwaway self-signed certificate for 127.0.0.1,
which the kiosk trusts through `[email] ca_file`.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, protocol
from twisted.logger import globalLogPublisher
from twisted.mail import smtp
from zope.interface import implementer

from kiosk.config import parse_config
from kiosk.i18n import Catalogues
from kiosk.mailer import ReceiptMailer
from kiosk.model import Receipt, Screen
from kiosk.present import Presenter
from kiosk.wording import Wording
from tests.kiosk.conftest import ITEMS, PATRON, LiveServer
from tests.kiosk.test_mailer import (
    PATRON_ADDRESS,
    Delivery,
    Mailbox,
    SmtpServer,
    borrow_and_finish,
    email_section,
)
from tests.kiosk.test_session import start_kiosk


def self_signed_pem(tmp_path: Path) -> tuple[bytes, Path]:
    """A throwaway key and certificate for 127.0.0.1 (PEM, key first), and the
    certificate alone in a file, for the kiosk's `ca_file`."""
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now().astimezone()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(certificate_pem)
    return key_pem + certificate_pem, ca_file


@implementer(IRealm)
class _Realm:
    """Logged-in senders deliver into the mailbox; each login is noted."""

    def __init__(self, box: Mailbox, logins: list[bytes]) -> None:
        self.box = box
        self.logins = logins

    def requestAvatar(self, avatar_id: bytes, mind: Any, *interfaces: Any) -> Any:
        self.logins.append(avatar_id)
        return smtp.IMessageDelivery, Delivery(self.box), lambda: None


class _TlsSmtpServer(protocol.ServerFactory):
    """Twisted's ESMTP server offering STARTTLS and AUTH LOGIN."""

    def __init__(self, box: Mailbox, pem: bytes, portal: Portal) -> None:
        from twisted.internet import ssl  # noqa: PLC0415

        self.box = box
        self.context = ssl.PrivateCertificate.loadPEM(pem).options()
        self.portal = portal
        self.servers: list[smtp.ESMTP] = []

    def buildProtocol(self, addr: Any) -> smtp.ESMTP:
        server = smtp.ESMTP(
            {b"LOGIN": smtp.LOGINCredentials},
            self.context,
        )
        server.portal = self.portal
        server.factory = self
        self.servers.append(server)
        return server


@pytest_twisted.ensureDeferred
async def test_a_receipt_goes_over_starttls_with_a_login(tmp_path: Path) -> None:
    """With starttls required, the kiosk checks the server's certificate
    against its `ca_file`, logs in, and the mail arrives over TLS."""
    from twisted.internet import reactor  # noqa: PLC0415

    pem, ca_file = self_signed_pem(tmp_path)
    box, logins = Mailbox(), []
    checker = InMemoryUsernamePasswordDatabaseDontUse(kiosk=b"s3cret")
    server = _TlsSmtpServer(box, pem, Portal(_Realm(box, logins), [checker]))
    port = reactor.listenTCP(0, server, interface="127.0.0.1")
    config = parse_config(
        {
            "kiosk": {"institution": "DEMO", "branch": "MAIN"},
            "account": {"login": "k", "password": "p"},
            "email": email_section(
                port.getHost().port,
                starttls="required",
                username="kiosk",
                password="s3cret",
                ca_file=str(ca_file),
            ),
        },
        "<test>",
    )
    mailer = ReceiptMailer(
        config.email,
        reactor,
        words=Presenter(Catalogues(["en"]), Wording.load()),
        library_name="Kiosk",
    )
    try:
        sent = await mailer.send(to=PATRON_ADDRESS, card=PATRON, rows=[], language="en")
    finally:
        await defer.maybeDeferred(port.stopListening)

    assert sent is True
    assert [b"kiosk"] == logins
    assert [True] == [one.startedTLS for one in server.servers]
    assert PATRON_ADDRESS == box.mails[0].recipient


@pytest_twisted.ensureDeferred
async def test_nothing_is_sent_when_required_tls_is_not_offered() -> None:
    """A server without STARTTLS gets no receipt when TLS is required (the
    default): the send fails as "TLS" and the mailbox stays empty."""
    from twisted.internet import reactor  # noqa: PLC0415

    box = Mailbox()
    port = reactor.listenTCP(0, SmtpServer(box), interface="127.0.0.1")
    config = parse_config(
        {
            "kiosk": {"institution": "DEMO", "branch": "MAIN"},
            "account": {"login": "k", "password": "p"},
            "email": email_section(port.getHost().port, starttls="required"),
        },
        "<test>",
    )
    mailer = ReceiptMailer(
        config.email,
        reactor,
        words=Presenter(Catalogues(["en"]), Wording.load()),
        library_name="Kiosk",
    )
    try:
        sent = await mailer.send(to=PATRON_ADDRESS, card=PATRON, rows=[], language="en")
    finally:
        await defer.maybeDeferred(port.stopListening)

    assert sent is False
    assert "TLS" == mailer.problem
    assert [] == box.mails


@pytest_twisted.ensureDeferred
async def test_an_unusable_ca_file_sends_nothing_and_the_session_ends(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A ca_file with no certificate in it: the email receipt is dropped with a
    logged error, the session ends at once and the staff screen still opens."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not a certificate\n")
    started = await start_kiosk(
        live_server,
        tmp_path,
        services={"email_receipt": True},
        email=email_section(25, starttls="required", ca_file=str(ca_file)),
    )
    failures: list[BaseException] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            failures.append(event["log_failure"].value)

    globalLogPublisher.addObserver(observe)
    try:
        check = started.check
        await borrow_and_finish(check, ITEMS[0])
        assert check.email_offered

        check.receipt(Receipt.EMAIL)

        assert Screen.ATTRACT is check.screen
        assert check.mailer is None
        assert "email receipts" not in check.staff_status()
    finally:
        globalLogPublisher.removeObserver(observe)
        started.link.stop()
        started.journal.close()
    assert ["email.ca_file: no PEM certificate in it"] == [
        str(failure) for failure in failures
    ]
