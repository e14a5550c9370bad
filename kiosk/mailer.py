"""Email receipts: a plain-text message in the patron's language, sent over SMTP.

Layer: `kiosk`, beside the devices: Twisted's SMTP client (`twisted.mail.smtp`)
on the reactor the kiosk shares with Kivy, the standard library's `email`
package, and `drivers.printer` for the card mask. No Kivy, never `ils`, and it
must not import `kiosk.session` or `kiosk.present` (the session imports this
module; the words come in through the `ReceiptWords` port).

Sending never blocks the patron: `ReceiptMailer.send` starts the SMTP
conversation and returns at once; the session ends while the mail goes. A
failure is logged (the address masked, never the card or a PIN) and counted for
the staff screen; the mail is then lost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from io import BytesIO
from typing import Any, Protocol

from twisted.internet import defer, error
from twisted.logger import Logger
from twisted.mail import smtp
from twisted.python.failure import Failure

from .config import MAIL_ADDRESS, EmailSection
from .i18n import Catalogues
from .tls import client_tls_options
from .transactions import ItemOutcome

log = Logger()


def N_(message: str) -> str:
    """Mark a message for translation without translating it here."""
    return message


#: The subject of an email receipt.
SUBJECT = N_("Your receipt from {library}")
#: The last line of an email receipt.
CLOSING = N_("This receipt was sent by the self-check kiosk; please do not reply.")
#: Every msgid this module asks the catalogues for (the printed receipt's
#: "Date" and "Card" labels, and the screens' summary and "label: value").
MESSAGES = (SUBJECT, CLOSING)

#: The key of the staff screen's status line.
STATUS_KEY = "email receipts"


class RowLine(Protocol):
    """One item as the screens word it (kiosk.present.RowText)."""

    @property
    def title(self) -> str: ...

    @property
    def detail(self) -> str: ...


class ReceiptWords(Protocol):
    """What a receipt needs of the presenter (kiosk.present.Presenter)."""

    catalogues: Catalogues

    def t(self, language: str, message: str, **values: object) -> str: ...

    def row(self, language: str, outcome: ItemOutcome) -> RowLine: ...

    def summary(self, language: str, rows: list[ItemOutcome]) -> str: ...


def receipt_address(email: str | None) -> str | None:
    """The address to mail a receipt to, from the patron's SIP2 BE field.

    The first of several (comma or semicolon separated) is taken; None when
    there is none or it is not a plain ASCII address (so nothing from the
    server can add a header or a second recipient).
    """
    if not email:
        return None
    first = re.split(r"[,;]", email, maxsplit=1)[0].strip()
    # TODO(#6): internationalised addresses (SMTPUTF8, RFC 6531) are not offered.
    return first if MAIL_ADDRESS.fullmatch(first) else None


def mask_address(address: str) -> str:
    """An address as logs show it: "p***@***.invalid" (first letter, top-level
    domain)."""
    local, _, domain = address.rpartition("@")
    top = domain.rpartition(".")[2]
    return f"{local[:1]}***@***.{top}"


def receipt_message(
    words: ReceiptWords,
    *,
    language: str,
    library_name: str,
    sender: str,
    to: str,
    card: str | None,
    rows: Sequence[ItemOutcome],
    now: datetime,
) -> EmailMessage:
    """The receipt of one session as a plain-text UTF-8 message in `language`.

    The library's name, the date, the card number masked as on the printed
    receipt, then each item (oldest first) with what happened: its due date,
    or why it was not done, in the words of the screens.
    """
    from drivers.printer.receipt import mask_card_number  # noqa: PLC0415

    def labelled(label: str, value: str) -> str:
        return words.t(
            language, "{label}: {value}", label=words.t(language, label), value=value
        )

    # The rows are kept newest first; a receipt reads in the order things were done.
    in_order = list(reversed(rows))
    stamp = f"{words.catalogues.date(language, now.date())} {now:%H:%M}"
    lines = [library_name, "", labelled("Date", stamp)]
    if card:
        lines.append(labelled("Card", mask_card_number(card)))
    lines.append("")
    for outcome in in_order:
        text = words.row(language, outcome)
        lines += [text.title, f"  {text.detail}", ""]
    lines += [words.summary(language, in_order), "", words.t(language, CLOSING)]

    message = EmailMessage()
    # The content first: set_content() drops any Content-* header set before.
    message.set_content(
        "\n".join(lines) + "\n", charset="utf-8", cte="quoted-printable"
    )
    message["Subject"] = words.t(language, SUBJECT, library=library_name)
    message["From"] = Address(display_name=library_name, addr_spec=sender)
    message["To"] = to
    message["Date"] = format_datetime(now.astimezone())
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message["Content-Language"] = language
    # RFC 3834: an automatic message, so that no one's auto-reply answers it.
    message["Auto-Submitted"] = "auto-generated"
    return message


def _problem(failure: Failure) -> str:
    """A short reason for the staff screen and the log, without any address
    (the SMTP client's own messages carry the conversation's transcript)."""
    reason = failure.value
    if isinstance(reason, error.TimeoutError | smtp.SMTPTimeoutError):
        return "timeout"
    if isinstance(reason, smtp.SMTPConnectError):
        return "unreachable"
    if isinstance(reason, smtp.TLSError | smtp.TLSRequiredError):
        return "TLS"
    if isinstance(reason, smtp.AuthenticationError | smtp.AUTHRequiredError):
        return "login"
    if isinstance(reason, smtp.SMTPClientError) and reason.code > 0:
        return f"SMTP {reason.code}"
    return type(reason).__name__


class _ReceiptSenderFactory(smtp.ESMTPSenderFactory):
    """Twisted's one-message sender, its reply timeout on the kiosk's clock."""

    clock: Any = None

    def buildProtocol(self, addr: Any) -> Any:
        sender = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if self.clock is not None:
            sender.callLater = self.clock.callLater
        return sender


class ReceiptMailer:
    """Sends email receipts through the SMTP server of `[email]`, in the background.

    `clock` (default: the reactor) times the server's replies.
    """

    def __init__(
        self,
        config: EmailSection,
        reactor: Any,
        *,
        words: ReceiptWords,
        library_name: str,
        clock: Any = None,
    ) -> None:
        self.config = config
        self.words = words
        self.library_name = library_name
        self._reactor = reactor
        self._clock = clock if clock is not None else reactor
        self._tls = self._tls_options() if config.starttls != "off" else None
        self.sent = 0
        self.failed = 0
        #: Why the last failed receipt was not sent ("" when none has failed).
        self.problem = ""
        #: Receipts on their way (each fires, never fails, once settled).
        # TODO(#6): the kiosk's close() does not wait for these; a mail still on
        # its way when the kiosk stops is dropped.
        self.pending: set[defer.Deferred[bool]] = set()

    def _tls_options(self) -> Any:
        """The client TLS options: the server's certificate is checked against
        `host`, trusting `ca_file`'s certificates (or the system's).

        Raises:
            OSError: `ca_file` cannot be read.
            ValueError: `ca_file` holds no certificate that can be read.
        """
        return client_tls_options(
            self.config.host, self.config.ca_file, key="email.ca_file"
        )

    def send(
        self,
        *,
        to: str,
        card: str | None,
        rows: Sequence[ItemOutcome],
        language: str,
    ) -> defer.Deferred[bool]:
        """Start sending one receipt; fires True when the server took it, False
        when it failed (logged and counted). It never errs and never blocks."""
        config = self.config
        message = receipt_message(
            self.words,
            language=language,
            library_name=self.library_name,
            sender=config.sender,
            to=to,
            card=card,
            rows=rows,
            now=datetime.now(),
        )
        result: defer.Deferred[Any] = defer.Deferred()
        factory = _ReceiptSenderFactory(  # type: ignore[no-untyped-call]
            config.username.encode() or None,
            config.password.encode() or None,
            config.sender,
            [to],
            BytesIO(message.as_bytes()),
            result,
            retries=0,
            timeout=config.timeout,
            contextFactory=self._tls,
            heloFallback=not config.username and config.starttls != "required",
            requireAuthentication=bool(config.username),
            requireTransportSecurity=config.starttls == "required",
        )
        factory.domain = (config.helo or config.sender.rpartition("@")[2]).encode()
        factory.clock = self._clock
        self._reactor.connectTCP(config.host, config.port, factory, config.timeout)

        masked = mask_address(to)

        def sent(_: object) -> bool:
            self.sent += 1
            log.info("email receipt sent to {address}", address=masked)
            return True

        def failed(failure: Failure) -> bool:
            self.failed += 1
            self.problem = _problem(failure)
            log.warn(
                "email receipt to {address} not sent: {problem}",
                address=masked,
                problem=self.problem,
            )
            # TODO(#6): keep a failed receipt for a retry (it is lost now).
            return False

        settled: defer.Deferred[bool] = result.addCallbacks(sent, failed)
        self.pending.add(settled)
        settled.addBoth(self._settled, settled)
        return settled

    def _settled(self, outcome: bool, which: defer.Deferred[bool]) -> bool:
        self.pending.discard(which)
        return outcome

    def status(self) -> dict[str, str]:
        """The staff screen's line: "ready", or counts and the last problem."""
        if not (self.sent or self.failed):
            return {STATUS_KEY: "ready"}
        counts = f"{self.sent} sent, {self.failed} failed"
        if self.failed:
            counts += f" ({self.problem})"
        return {STATUS_KEY: counts}
