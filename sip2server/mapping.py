"""From SIP2 requests to circulation calls, and from their results to responses.

Layer: `sip2server`. The only place where SIP2's codes and the core's domain
meet: the core's refusals become `ok=0`, a screen message and flags here (in
`sip2server.answers`, one module per message group), and nowhere else. Runs in
the server's worker threads; every call is synchronous. Every response, a
refusal included, passes through the account's output policy
(`sip2server.answers.output`) on its way out.
"""

from __future__ import annotations

import dataclasses
import resource
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from twisted.logger import Logger, LogLevel

from ils.circulation import Circulation
from ils.db import Database
from ils.fees import FeeService
from ils.institutions import branch_institutions
from ils.terminal_requests import TerminalRequests
from sip2server.answers import fees, holds, items, loans, patrons
from sip2server.answers.common import (
    Desk,
    Services,
    due_date,
    money,
    patron_status,
    policy_of,
)
from sip2server.answers.output import apply_policy
from sip2server.answers.scope import out_of_reach
from sip2server.config import AccountConfig
from sip2server.policy import DEFAULT_POLICY, REWRITE_TIMEOUT, TerminalPolicy
from sip2server.protocol import (
    AcsStatusResponse,
    BlockPatronRequest,
    CheckinRequest,
    CheckoutRequest,
    EndPatronSessionRequest,
    EndSessionResponse,
    FeePaidRequest,
    FeePaidResponse,
    HoldRequest,
    HoldResponse,
    ItemInformationRequest,
    ItemStatusUpdateRequest,
    ItemStatusUpdateResponse,
    Language,
    Message,
    PatronEnableRequest,
    PatronEnableResponse,
    PatronInformationRequest,
    PatronStatusRequest,
    RenewAllRequest,
    RenewRequest,
    SupportedMessages,
)

__all__ = [
    "DESCRIPTOR_MARGIN",
    "SUPPORTED",
    "SipCirculation",
    "descriptor_shortfall",
    "due_date",
    "money",
]

# What this server really answers; sent as BX in 98. Every request type of
# SIP2 2.00 has real behaviour behind it.
SUPPORTED = SupportedMessages(
    patron_status_request=True,
    checkout=True,
    checkin=True,
    block_patron=True,
    sc_acs_status=True,
    request_sc_acs_resend=True,
    login=True,
    patron_information=True,
    end_patron_session=True,
    fee_paid=True,
    item_information=True,
    item_status_update=True,
    patron_enable=True,
    hold=True,
    renew=True,
    renew_all=True,
)
# Without the core's terminal requests, 01, 19 and 25 have no answer.
SUPPORTED_WITHOUT_TERMINAL_REQUESTS = dataclasses.replace(
    SUPPORTED, block_patron=False, item_status_update=False, patron_enable=False
)

# 98's timeout period is in tenths of a second: how long a terminal should wait
# for a reply before it retries.
TIMEOUT_TENTHS = 100
RETRIES_ALLOWED = 3

_log = Logger(namespace="sip2server.mapping")

_UTC = ZoneInfo("UTC")

# The same warning about one account (a rewrite that ran out of time, a reply
# the policy could not be applied to) is logged at most once in this many
# seconds; the next one says how many were not logged.
QUIET_SECONDS = 300.0

# Descriptors a server needs besides its terminals' sockets: the database pool,
# listeners, the metrics port, log files, the reactor's own.
DESCRIPTOR_MARGIN = 64


def descriptor_shortfall(
    max_connections: int, limits: tuple[int, int] | None = None
) -> str | None:
    """Why `max_connections` terminals would run out of file descriptors, if so.

    Args:
        max_connections: `server.max_connections`.
        limits: (soft, hard) RLIMIT_NOFILE; this process's when None.
    """
    soft, _hard = limits or resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or max_connections + DESCRIPTOR_MARGIN <= soft:
        return None
    return (
        f"server.max_connections is {max_connections}, but this process may open "
        f"only {soft} files (RLIMIT_NOFILE) and keeps {DESCRIPTOR_MARGIN} for the "
        f"database, listeners and logs: past {max(soft - DESCRIPTOR_MARGIN, 0)} "
        "terminals, requests fail; raise LimitNOFILE (systemd) or ulimit -n, or "
        "lower server.max_connections"
    )


class QuietPeriods:
    """Which repeated warnings are due: the first of each kind, then at most
    one per `seconds`, each with the count of those held back since.

    Thread-safe: the worker threads answer requests side by side.

    Args:
        seconds: how long a warning of one kind keeps the next ones quiet.
        clock: seconds on a monotonic clock; tests pass their own.
    """

    def __init__(
        self,
        seconds: float = QUIET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        # kind -> (when it was last logged, how many were held back since)
        self._kinds: dict[tuple[str, ...], tuple[float, int]] = {}

    def due(self, *kind: str) -> int | None:
        """None to stay quiet, else how many of this kind were held back."""
        now = self._clock()
        with self._lock:
            last = self._kinds.get(kind)
            if last is not None and now - last[0] < self._seconds:
                self._kinds[kind] = (last[0], last[1] + 1)
                return None
            self._kinds[kind] = (now, 0)
            return 0 if last is None else last[1]


_Answer = Callable[[Services, Desk, Any], Message]

_ANSWERS: dict[type[Message], _Answer] = {
    PatronStatusRequest: patrons.patron_status_answer,
    PatronInformationRequest: patrons.patron_information,
    EndPatronSessionRequest: patrons.end_session,
    CheckoutRequest: loans.checkout,
    RenewRequest: loans.renew,
    RenewAllRequest: loans.renew_all,
    CheckinRequest: items.checkin,
    ItemInformationRequest: items.item_information,
    HoldRequest: holds.hold,
    FeePaidRequest: fees.fee_paid,
}
_TERMINAL_ANSWERS: dict[type[Message], _Answer] = {
    BlockPatronRequest: patrons.block_patron,
    PatronEnableRequest: patrons.patron_enable,
    ItemStatusUpdateRequest: items.item_status_update,
}


class SipCirculation:
    """Answers SIP2 requests from a terminal by calling the circulation core.

    Args:
        circulation: the core's circulation use cases.
        branch_zones: each branch code's time zone (SIP2 dates are local).
        library_names: each institution code's name, for AM of 98.
        terminal_requests: the core's block, enable and item-note use cases;
            built from `database` if absent; without either, 01, 19 and 25
            get 96.
        fees: the core's fee service, for 37; built from `database` if absent.
        database: the library database, for patron standings and title look-ups.
        clock: the current time, aware; tests pass a fixed one.
    """

    def __init__(
        self,
        circulation: Circulation,
        *,
        branch_zones: Mapping[str, ZoneInfo],
        library_names: Mapping[str, str],
        terminal_requests: TerminalRequests | None = None,
        fees: FeeService | None = None,
        database: Database | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reply_bytes: int = patrons.REPLY_BYTES,
    ) -> None:
        self.reply_bytes = reply_bytes
        if fees is None and database is not None:
            fees = FeeService(database)
        if terminal_requests is None and database is not None:
            terminal_requests = TerminalRequests(database)
        self._services = Services(
            circulation=circulation,
            terminal_requests=terminal_requests,
            fees=fees,
            database=database,
            clock=clock,
        )
        self._zones = dict(branch_zones)
        self._library_names = dict(library_names)
        self._branch_owners: dict[str, str] = {}
        self._clock = clock
        self._answers = dict(_ANSWERS)
        self._supported = SUPPORTED_WITHOUT_TERMINAL_REQUESTS
        if terminal_requests is not None:
            self._answers |= _TERMINAL_ANSWERS
            self._supported = SUPPORTED
        if fees is None:
            del self._answers[FeePaidRequest]
            self._supported = dataclasses.replace(self._supported, fee_paid=False)
        self.quiet = QuietPeriods()

    @property
    def supported(self) -> SupportedMessages:
        """BX: the request types this mapping answers."""
        return self._supported

    # -- what the session calls ------------------------------------------------

    def status(self, account: AccountConfig | None) -> AcsStatusResponse:
        """The ACS status (98), also for a terminal that has not logged in yet."""
        institution = "" if account is None else account.institution
        return AcsStatusResponse(
            online_status=True,
            checkin_ok=True,
            checkout_ok=True,
            acs_renewal_policy=True,
            status_update_ok=self._supported.item_status_update,
            offline_ok=False,
            timeout_period=TIMEOUT_TENTHS,
            retries_allowed=RETRIES_ALLOWED,
            date_time_sync=self._local_now(account),
            institution_id=institution,
            supported_messages=self._supported,
            library_name=self._library_names.get(institution),
            terminal_location=None if account is None else account.location,
        )

    def answer(self, message: Message, account: AccountConfig) -> Message | None:
        """The response to a request, or None when this server does not support it."""
        answer = self._answers.get(type(message))
        if answer is None:
            return None
        desk = self.desk(account)
        database = self._services.database
        if database is not None:
            beyond = out_of_reach(database, self._branch_owner, desk, message)
            if beyond is not None:
                # Answered as unknown: the terminal learns nothing of another
                # institution; the operator learns which account tried.
                _log.warn(
                    "{terminal} asked for a {what} of institution {owner}, which "
                    "it does not serve; answered as unknown",
                    terminal=account.login,
                    command=message.command,
                    what=beyond.what,
                    owner=beyond.owner,
                )
                refused = self.refuse(message, beyond.text, account)
                if refused is not None:
                    return refused
        return self.as_policy_says(
            answer(self._services, desk, message), desk.policy, account.login
        )

    def desk(self, account: AccountConfig) -> Desk:
        """The circumstances of a request from `account`, now."""
        zone = self._zone(account)
        moment = self._clock()
        return Desk(
            account=account,
            policy=policy_of(account),
            now=moment.astimezone(zone).replace(tzinfo=None),
            moment=moment,
            zone=zone,
            reply_bytes=self.reply_bytes,
        )

    def refuse(
        self,
        message: Message,
        text: str,
        account: AccountConfig | None = None,
        *,
        outage: bool = False,
    ) -> Message | None:
        """A well-formed negative response to `message` with `text` on screen.

        With `outage` (the database could not be asked), a patron's reply
        leaves out BL: whether the card is valid is not known, and a BL of N
        would have a kiosk tell the patron the card is not valid. None when
        the message type has no answer here (the server sends 96).
        """
        refusal = self.refuse_command(
            message.command,
            text,
            account=account,
            institution=getattr(message, "institution_id", "") or "",
            patron=getattr(message, "patron_identifier", "") or "",
            item=getattr(message, "item_identifier", "") or "",
            language=getattr(message, "language", Language.UNKNOWN),
        )
        if outage and hasattr(refusal, "valid_patron"):
            refusal = dataclasses.replace(refusal, valid_patron=None)
        return refusal

    def refuse_command(
        self,
        command: str,
        text: str,
        *,
        institution: str = "",
        patron: str = "",
        item: str = "",
        language: Language = Language.UNKNOWN,
        account: AccountConfig | None = None,
    ) -> Message | None:
        """A negative response to a request known only by its command code.

        Used too for a request that arrived whole but with a value that cannot
        be read: answering 96 would make the terminal send the same bad value
        again, so it is told why instead. None for a command with no answer here.
        """
        if not any(kind.command == command for kind in self._answers):
            return None
        desk = self._refusal_desk(account)
        refusal = _refusal(desk, command, text, institution, patron, item, language)
        if refusal is None:
            return None
        if account is None:
            return refusal
        return self.as_policy_says(refusal, desk.policy, account.login)

    def as_policy_says(
        self, reply: Message, policy: TerminalPolicy, login: str
    ) -> Message:
        """`reply` after the account's output policy (`apply_policy`).

        The reply may follow a committed change (a checkout), so a fault here
        must not turn it into a 96 the terminal would resend: if the policy
        cannot be applied, the reply is sent with its screen messages as they
        were (fields are still hidden) and the fault is logged, once per
        account in `QUIET_SECONDS`. A rewrite that runs out of time leaves its
        text as it was and is logged the same way.
        """

        def slow(pattern: str) -> None:
            held_back = self.quiet.due("slow rewrite", login, pattern)
            if held_back is not None:
                _log.warn(
                    "screen rewrite {pattern!r} of account {terminal} ran out of "
                    "time ({seconds} s) and was skipped ({held_back} more since "
                    "the last warning); make the pattern simpler",
                    pattern=pattern,
                    terminal=login,
                    seconds=REWRITE_TIMEOUT,
                    held_back=held_back,
                )

        try:
            return apply_policy(reply, policy, slow=slow)
        except Exception:
            held_back = self.quiet.due("policy fault", login)
            if held_back is not None:
                _log.failure(
                    "fault while applying the output policy of account "
                    "{terminal} to a {command} ({held_back} more since the last "
                    "report); sent with its screen messages not rewritten",
                    level=LogLevel.error,
                    terminal=login,
                    command=reply.command,
                    held_back=held_back,
                )
        return apply_policy(reply, policy, rewrite=False)

    # -- building blocks -------------------------------------------------------

    def _refusal_desk(self, account: AccountConfig | None) -> Desk:
        if account is not None:
            return self.desk(account)
        moment = self._clock()
        # A refusal reads only the desk's time and policy, never its account.
        return Desk(
            account=None,  # type: ignore[arg-type]
            policy=DEFAULT_POLICY,
            now=moment.astimezone(_UTC).replace(tzinfo=None),
            moment=moment,
            zone=_UTC,
        )

    def _branch_owner(self, code: str) -> str | None:
        # Branches are few and rarely added: read them all once, again on a miss.
        owner = self._branch_owners.get(code)
        if owner is None and self._services.database is not None:
            self._branch_owners = branch_institutions(self._services.database)
            owner = self._branch_owners.get(code)
        return owner

    def _zone(self, account: AccountConfig | None) -> ZoneInfo:
        # Every zone is read once (at start and reload, UTC at import): reading
        # one per request opened a file, and failed when descriptors ran out.
        if account is None:
            return _UTC
        return self._zones.get(account.location) or _UTC

    def _local_now(self, account: AccountConfig | None) -> datetime:
        # SIP dates without a zone are the terminal's local time: the branch's.
        return self._clock().astimezone(self._zone(account)).replace(tzinfo=None)


def _refusal(  # noqa: PLR0917 - one negative response per request type
    desk: Desk,
    command: str,
    text: str,
    institution: str,
    patron: str,
    item: str,
    language: Language,
) -> Message | None:
    if command in (PatronStatusRequest.command, BlockPatronRequest.command):
        return patrons.patron_status_refused(desk, institution, patron, language, text)
    if command == PatronInformationRequest.command:
        return patrons.unknown_patron_information(
            desk, language, institution, patron, (text,)
        )
    if command == CheckoutRequest.command:
        return loans.checkout_refused(
            desk, institution=institution, patron=patron, item=item, title="", text=text
        )
    if command == RenewRequest.command:
        return loans.renew_refused(
            desk, institution=institution, patron=patron, item=item, title="", text=text
        )
    if command == RenewAllRequest.command:
        return loans.renew_all_refused(desk, institution, text)
    if command == CheckinRequest.command:
        return items.checkin_refused(desk, institution, item, text)
    if command == ItemInformationRequest.command:
        return items.unknown_item(desk, item, text)
    if command == PatronEnableRequest.command:
        return PatronEnableResponse(
            patron_status=patron_status(None),
            language=language,
            transaction_date=desk.now,
            institution_id=institution,
            patron_identifier=patron,
            personal_name="",
            valid_patron=False,
            screen_message=(text,),
        )
    if command == ItemStatusUpdateRequest.command:
        return ItemStatusUpdateResponse(
            item_properties_ok=False,
            transaction_date=desk.now,
            item_identifier=item,
            screen_message=(text,),
        )
    if command == HoldRequest.command:
        return HoldResponse(
            ok=False,
            available=False,
            transaction_date=desk.now,
            institution_id=institution,
            patron_identifier=patron,
            item_identifier=item or None,
            screen_message=(text,),
        )
    if command == FeePaidRequest.command:
        return FeePaidResponse(
            payment_accepted=False,
            transaction_date=desk.now,
            institution_id=institution,
            patron_identifier=patron,
            screen_message=(text,),
        )
    if command == EndPatronSessionRequest.command:
        return EndSessionResponse(
            end_session=False,
            transaction_date=desk.now,
            institution_id=institution,
            patron_identifier=patron,
            screen_message=(text,),
        )
    return None
