"""The "my account" screen, renewals and the receipt at the end of a session.

Layer: `kiosk` view model, a part of `SelfCheck` (kiosk/session.py). No Kivy
and never `ils`; it must not import `kiosk.session` (the session imports it).
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.logger import Logger

from .i18n import Catalogues
from .mailer import ReceiptMailer, receipt_address
from .model import Cue, Receipt, Screen, mask
from .sipclient import SipLinkError
from .transactions import Action, ItemOutcome, Result
from .wording import Refusal, Wording

# The same namespace as before the split, so log filters keep matching.
log = Logger(namespace="kiosk.session")

#: The actions that make a loan with a due date.
LOANS = {Action.BORROW, Action.RENEW}


class AccountScreen:
    """Loans, holds and fees, renewals and receipts, mixed into `SelfCheck`."""

    #: Sends email receipts: made from `[email]` on first use (a test may set
    #: its own); None while no SMTP host is configured.
    mailer: ReceiptMailer | None = None
    #: Why the mailer could not be made ("" while it could, or was not tried).
    mailer_problem = ""

    async def renew(self, barcode: str) -> None:
        """Renew one loan: from an "already yours" row or the account screen."""
        if self.patron is None or barcode in self.renewing:
            # A second tap while the first renewal is on its way does nothing.
            return
        session = self._session
        self.touch()
        self.busy = True
        self._changed()
        self.renewing.add(barcode)
        try:
            outcome = await self.desk.renew(self.patron, barcode)
        finally:
            self.renewing.discard(barcode)
        if session != self._session:
            return
        self.busy = False
        if self.screen is Screen.ACCOUNT:
            self.notice = None
            self._cue(Cue.FAILURE if outcome.result is Result.REFUSED else Cue.SUCCESS)
            if outcome.result is Result.REFUSED and any(
                row.barcode == barcode and row.result is Result.DONE
                for row in self.account_rows
            ):
                # Renewed in this session already: a later refusal (too soon
                # to renew again) does not hide that it was done.
                self._changed()
                return
            # Shown on the account screen, and kept for the receipt.
            self.account_rows = [r for r in self.account_rows if r.barcode != barcode]
            self.account_rows.insert(0, outcome)
            self._keep_renewal(outcome)
            if outcome.result is Result.DONE:
                await self._load_account(session)
            self._changed()
        else:
            self._show(outcome)

    def _keep_renewal(self, outcome: ItemOutcome) -> None:
        """Put a renewal from the account screen on the session's receipt.

        It replaces an earlier renewal of the item, never what else happened
        to it in this session (a loan made, a return): and a refused renewal
        of an item lent or renewed in this session is left off, so the
        receipt still says the item was lent, with its due date.
        """
        barcode = outcome.barcode
        self.rows = [
            r
            for r in self.rows
            if not (r.barcode == barcode and r.action is Action.RENEW)
        ]
        done_here = any(
            r.barcode == barcode and r.result is Result.DONE for r in self.rows
        )
        if outcome.result is Result.DONE or not done_here:
            self.rows.insert(0, outcome)

    async def open_account(self) -> None:
        """Show the patron's loans, holds and fees."""
        if self.screen is not Screen.MENU or not self.account_offered:
            return
        session = self._session
        self.account_rows = []
        # The last reading is not shown while the new one is on its way.
        self.account = None
        self._go(Screen.ACCOUNT)
        await self._load_account(session)

    async def _load_account(self, session: int) -> None:
        assert self.patron is not None
        self.busy = True
        self._changed()
        try:
            account = await self.desk.account(self.patron)
        except Exception as error:
            if not isinstance(error, SipLinkError):
                # Never leave the patron at a busy screen with no answer.
                log.failure("reading the account failed")
            if session == self._session:
                self.busy = False
                self._refuse(Refusal.SERVER_UNREACHABLE)
            return
        if session != self._session:
            return
        self.busy = False
        self.account = account
        self._changed()

    def finish(self) -> None:
        """Done: offer a receipt (or end at once when there is nothing to show).

        Tapped while an item is still with the server, it waits for that item
        (and any scanned after it), so that the item is shown and on the receipt.
        """
        if self.items_in_flight():
            self.finish_pending = True
            return
        self.finish_pending = False
        if not self.rows:
            self.end_session()
            return
        self._go(Screen.FINISH)

    def receipt(self, kind: Receipt) -> None:
        """Print, email or no receipt; then the session ends."""
        kind = Receipt(kind)
        if self.screen is not Screen.FINISH:
            return
        if kind is Receipt.PRINT and self.print_offered and self.devices is not None:
            card = None if self.patron is None else self.patron.barcode

            def printed(done: object) -> None:
                if done is not True:
                    log.warn("the receipt could not be printed")

            # Printed off the event loop; the session ends meanwhile.
            self.devices.print_receipt_later(
                card, list(self.rows), self.language
            ).addBoth(printed)
        elif kind is Receipt.EMAIL and self.email_offered:
            try:
                self.send_email_receipt()
            except Exception:  # the session must end all the same
                log.failure("the email receipt could not be started")
        self.end_session()

    def send_email_receipt(self) -> defer.Deferred[bool] | None:
        """Start mailing this session's receipt to the patron's address (from
        SIP2 BE); the session need not wait for it. None when there is no
        mailer or no usable address."""
        mailer = self.receipt_mailer()
        address = None if self.patron is None else receipt_address(self.patron.email)
        if mailer is None or address is None or self.patron is None:
            return None
        return mailer.send(
            to=address,
            card=self.patron.barcode,
            rows=list(self.rows),
            language=self.language,
        )

    def receipt_mailer(self) -> ReceiptMailer | None:
        """The mailer of `[email]`, made on first use (None without a host)."""
        if self.mailer is None and self.config.email.host and not self.mailer_problem:
            from twisted.internet import reactor  # noqa: PLC0415

            # Imported here: kiosk.present imports the session, which imports this.
            from .present import Presenter  # noqa: PLC0415

            config = self.config
            words = Presenter(
                Catalogues(config.kiosk.languages),
                Wording.load(config.messages.catalogue or None),
            )
            try:
                self.mailer = ReceiptMailer(
                    config.email, reactor, words=words, library_name=config.kiosk.name
                )
            except (OSError, ValueError) as problem:
                # A ca_file that cannot be read or holds no usable certificate:
                # logged once, and no email receipts until the kiosk restarts.
                self.mailer_problem = str(problem)
                log.failure("email receipts cannot be set up")
        return self.mailer

    def receipt_lines(self) -> list[str]:
        """The receipt as plain lines (in English; the card number masked)."""
        lines = [self.config.kiosk.name]
        if self.patron is not None:
            lines.append(f"Card {mask(self.patron.barcode)}")
        for row in reversed(self.rows):
            state = {
                Result.DONE: "ok",
                Result.QUEUED: "recorded",
                Result.REFUSED: "not done",
                Result.OFFER_RENEW: "not done",
            }[row.result]
            due = f" due {row.due:%Y-%m-%d}" if row.due else ""
            if not row.due and row.result is Result.DONE and row.action in LOANS:
                due = " due date not known"
            lines.append(f"{row.action}: {row.title or row.barcode}{due} ({state})")
        return lines
