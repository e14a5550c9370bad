"""The finish screen's email button, in the whole kiosk app (SDL offscreen), with
the kiosk assembled as `ils kiosk` assembles it and Twisted's SMTP server on
loopback taking the mail."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_twisted
import sqlalchemy as sa
from twisted.internet import defer
from twisted.internet.task import Clock

from ils.models import Patron as CorePatron
from kiosk.model import Screen
from kiosk.runtime import Kiosk, assemble
from kiosk.sipclient import LinkState
from tests.kiosk.conftest import ITEMS, PATRON, LiveServer, kiosk_config
from tests.kiosk.test_gui import frames, settle, sign_in, type_keys
from tests.kiosk.test_mailer import PATRON_ADDRESS, Mailbox, SmtpServer, email_section
from tests.kiosk.test_sipclient import reached


@pytest_twisted.async_yield_fixture
async def smtp_box() -> AsyncIterator[tuple[Mailbox, int]]:
    """Twisted's SMTP server on a free loopback port, with its mailbox."""
    from twisted.internet import reactor  # noqa: PLC0415

    box = Mailbox()
    port = reactor.listenTCP(0, SmtpServer(box), interface="127.0.0.1")
    try:
        yield box, port.getHost().port
    finally:
        await defer.maybeDeferred(port.stopListening)


@pytest_twisted.async_yield_fixture
async def mail_gui(
    live_server: LiveServer, tmp_path: Path, smtp_box: tuple[Mailbox, int]
) -> AsyncIterator[Kiosk]:
    """A running kiosk app, online, offering email receipts through the test
    SMTP server."""
    from twisted.internet import reactor  # noqa: PLC0415

    config = kiosk_config(
        live_server.port,
        tmp_path,
        services={"email_receipt": True},
        email=email_section(smtp_box[1]),
    )
    kiosk = assemble(config, reactor, clock=Clock())
    kiosk.link.start()
    await reached(kiosk.link, LinkState.ONLINE)
    running = defer.Deferred.fromFuture(
        asyncio.ensure_future(kiosk.app.async_run(async_lib="asyncio"))
    )
    while kiosk.app.root is None and not running.called:
        await frames(1)
    if running.called:
        await running  # raises what stopped the app
    await frames()
    try:
        yield kiosk
    finally:
        kiosk.app.stop()
        await running
        kiosk.close()


async def borrow_then_finish(kiosk: Kiosk) -> None:
    """Sign in, borrow one item, press "finish"."""
    await sign_in(kiosk)
    kiosk.app.press("borrow")
    await settle(kiosk)
    type_keys(ITEMS[0])
    await settle(kiosk)
    kiosk.app.press("finish")
    await settle(kiosk)


@pytest_twisted.ensureDeferred
async def test_pressing_email_on_the_finish_screen_mails_the_receipt(
    mail_gui: Kiosk, smtp_box: tuple[Mailbox, int]
) -> None:
    """The email button is shown and usable; pressing it ends the session at
    once and the receipt reaches the SMTP server with the card masked."""
    box, _ = smtp_box
    await borrow_then_finish(mail_gui)
    assert Screen.FINISH is mail_gui.check.screen
    button = mail_gui.app.button("email")
    assert not button.disabled
    assert 1 == button.opacity

    mail_gui.app.press("email")
    await settle(mail_gui)

    assert Screen.ATTRACT is mail_gui.check.screen
    mail = await box.arrived()
    message = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert PATRON_ADDRESS == mail.recipient
    assert "Your receipt from kiosk" == message["Subject"]
    assert isinstance(message, email.message.EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Card: **********0018" in text
    assert "Pride and prejudice" in text
    assert PATRON not in text


@pytest_twisted.ensureDeferred
async def test_the_finish_screen_hides_email_from_a_patron_without_an_address(
    mail_gui: Kiosk, live_server: LiveServer
) -> None:
    """No address in the patron's record (no BE): the email button is not
    among the usable buttons (disabled and invisible)."""
    engine = sa.create_engine(live_server.library.url)
    with engine.begin() as connection:
        connection.execute(
            sa.update(CorePatron).where(CorePatron.barcode == PATRON).values(email=None)
        )
    engine.dispose()

    await borrow_then_finish(mail_gui)

    assert Screen.FINISH is mail_gui.check.screen
    assert not mail_gui.app.offer_email
    assert "email" not in {button.name for button in mail_gui.app.buttons()}
    assert "no_receipt" in {button.name for button in mail_gui.app.buttons()}
