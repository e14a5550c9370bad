"""Per-account terminal policy: what a kiosk, gate or sorter is told and allowed.

Layer: `sip2server`. Imports the standard library, pydantic, `regex` (which
runs screen rewrites with a time limit), the sibling modules `sortbins` and
`templates`, the codec's read-only layout view (to know which fields a message
carries), and the core's refusal reasons (`ils.results`,
`ils.models.ItemStatus`); never Twisted. The mapping layer
(`sip2server.mapping`) reads a `TerminalPolicy` from the account that sent a
request; this module only describes and validates it.

In the configuration it is the `policy` table of an `[[accounts]]` entry, or of
an `[institution.CODE]` table for every account of that institution (an
account's own keys win, key by key). Every key is optional; the defaults are
the spec's behaviour and this server's earlier one.
"""

from __future__ import annotations

import re
import re._parser as regex_parser  # type: ignore[import-not-found]  # no stubs
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, Self

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ils.currency import exponent
from ils.models import ItemStatus
from ils.results import CirculationRefused, Refusal
from sip2server.protocol import layout_view
from sip2server.sortbins import SortBinError, SortBinRules, parse_sort_bins
from sip2server.templates import Template, TemplateError

# A two-character SIP2 field code, as written on the wire.
_FieldCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9]$")]
_Code = Annotated[str, StringConstraints(min_length=1, max_length=32)]

# Field codes a policy may never hide or add: the frame's own machinery.
_UNTOUCHABLE = frozenset({"AY", "AZ"})

# Screen messages and print lines are the terminal's way to say why: an allow
# list never removes them (hide_fields still can).
_ALWAYS_ALLOWED = frozenset({"AF", "AG"})

# Why a request was refused, as a policy's `screen_messages` names it: the
# core's refusal reasons (`ils.results.Refusal` values, listed in the docs) and
# these of the server's own policies.
POLICY_REASONS = (
    "item_type_blocked",
    "lost_items_block_checkout",
    "overdues_block_checkout",
    "item_in_house_only",
    "patron_in_house_only",
    "hold_blocks_checkin",
    "checkin_not_on_loan",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScreenRewrite(_Strict):
    """One regular-expression rewrite of every screen message (AF) sent.

    The pattern is Python `re` syntax; rewrites run on the `regex` module,
    which reads it the same way and can stop a match that runs too long
    (`REWRITE_TIMEOUT`). The replacement is `re.sub`'s: `\\1` or `\\g<name>`
    for a group, `\\\\` for a backslash.
    """

    pattern: Annotated[str, StringConstraints(min_length=1)]
    replace: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        # The obvious stalls are refused here, with a clear reason; the others
        # are cut short by the time limit when they run.
        if _repeats_a_repeat(regex_parser.parse(value), False):
            raise ValueError(
                f"{value!r} repeats an unbounded repetition (like (a+)+), which "
                "can stall the server on one long screen message; write it "
                "without the outer repeat"
            )
        try:
            regex.compile(value)
        except regex.error as error:
            raise ValueError(
                f"not a regular expression the rewrite engine reads: {error}"
            ) from None
        return value

    @field_validator("replace")
    @classmethod
    def _replacement_reads(cls, value: str, info: ValidationInfo) -> str:
        pattern = info.data.get("pattern")
        if pattern is None:
            # The pattern's own problem is reported; this one cannot be judged.
            return value
        problem = _replacement_problem(pattern, value)
        if problem is not None:
            raise ValueError(problem)
        return value


# A rewrite reads at most this many characters of a screen message (the rest is
# cut off first): a bound on what any pattern can cost on text a terminal sent.
REWRITE_LIMIT = 200

# How long, in seconds, one rewrite of one screen message may run. Ordinary
# rewrites of 200 characters take microseconds; one that backtracks without end
# (such as (a|a)+$ on a run of a's) is stopped here and leaves the text as it
# was. The match runs without Python's global lock, so other terminals are
# served meanwhile.
REWRITE_TIMEOUT = 0.1

# How long, in seconds, all the rewrites of one reply may run together. Once it
# is spent the rewrites still to run are skipped for that reply (and reported
# like one that ran out of time), so many slow patterns cannot hold a reply, or
# the thread that builds it, for their sum.
REWRITE_BUDGET = 0.25

# The most rewrites an account may have (its institution's included): each is
# tried on every screen message sent.
MAX_REWRITES = 16

_REPEAT_OPS = (regex_parser.MAX_REPEAT, regex_parser.MIN_REPEAT)


def _repeats_a_repeat(parsed: Any, under_repeat: bool) -> bool:
    """Whether a parsed pattern has an unbounded repeat inside another repeat."""
    for op, argument in parsed:
        inner: list[tuple[Any, bool]] = []
        if op in _REPEAT_OPS:
            _least, most, body = argument
            if under_repeat and most == regex_parser.MAXREPEAT:
                return True
            inner.append((body, under_repeat or most > 1))
        elif op == regex_parser.SUBPATTERN:
            inner.append((argument[-1], under_repeat))
        elif op == regex_parser.BRANCH:
            inner.extend((branch, under_repeat) for branch in argument[1])
        elif op in (regex_parser.ASSERT, regex_parser.ASSERT_NOT):
            inner.append((argument[1], under_repeat))
        if any(_repeats_a_repeat(part, under) for part, under in inner):
            return True
    return False


def _replacement_problem(pattern: str, replace: str) -> str | None:
    """Why `replace` cannot replace a match of `pattern`, or None if it can."""
    # The engine reads a replacement only when the pattern first matches. This
    # probe has the pattern's groups (numbers and names) and also matches the
    # empty string, so the replacement is read at once. (The newline ends a
    # comment of a verbose pattern before the probe's own parenthesis.)
    try:
        probe = regex.compile(f"(?:{pattern}\n)|")
    except regex.error:
        return None
    try:
        probe.sub(replace, "", count=1, timeout=REWRITE_TIMEOUT)
    except (regex.error, IndexError) as error:
        return (
            f"'{replace}' is not a replacement for '{pattern}': {error} (name a "
            "group of the pattern as \\1 or \\g<name>, and write \\\\ for a "
            "backslash)"
        )
    except TimeoutError:  # pragma: no cover - matching the empty string
        return None
    return None


# Where templates go: patron fields into 24, 26 and 64, item fields into 10,
# 12, 18 and 30 (sip2server.answers).
_PATRON_TEMPLATE_MESSAGES = ("24", "26", "64")
_ITEM_TEMPLATE_MESSAGES = ("10", "12", "18", "30")
# Fields of those messages' layouts that this server never fills, so a template
# may give them (a library has used PB for the home branch); the mapping layer
# still drops a template's field if the message ever fills its own.
_SPARE_FIELDS = frozenset(
    {
        "AG",  # print line: repeatable, and never sent by this server
        "BD",  # home address (64): the core keeps none
        "PB",  # birth date (64): the core keeps none
        "PI",  # internet profile (64)
        "CI",  # security inhibit (12, 30)
        "CJ",  # recall date (18)
    }
)
# Fields this server adds to those messages beyond their layouts: HQ (queue
# places, 64), CT (where an item in transit goes, 18) and CQ (a refused PIN,
# 12 and 30).
_PATRON_EXTENSIONS = {"HQ": "the queue places of 64"}
_ITEM_EXTENSIONS = {
    "CT": "the destination location of 10 and 18",
    "CQ": "the PIN check of 12 and 30",
}


def _own_fields(
    commands: tuple[str, ...], extensions: Mapping[str, str]
) -> dict[str, str]:
    """The fields the server itself sends in `commands`: code -> what it is."""
    own: dict[str, str] = dict.fromkeys(_UNTOUCHABLE, "the frame's error detection")
    own |= extensions
    for command in commands:
        view = layout_view(command)
        for field in () if view is None else view.variable:
            if field.code is None or field.code in _SPARE_FIELDS:
                continue
            what = field.name.replace("_", " ")
            carried = [
                other
                for other in commands
                if (found := layout_view(other)) and found.field(field.code)
            ]
            own.setdefault(field.code, f"the {what} of {', '.join(carried)}")
    return own


_OWN_PATRON_FIELDS = _own_fields(_PATRON_TEMPLATE_MESSAGES, _PATRON_EXTENSIONS)
_OWN_ITEM_FIELDS = _own_fields(_ITEM_TEMPLATE_MESSAGES, _ITEM_EXTENSIONS)


class TerminalPolicy(_Strict):
    """What one account's terminals get and may do beyond the SIP2 defaults."""

    # -- institutions ---------------------------------------------------------
    # Institutions (besides the account's own) whose patrons, items and branches
    # this account may serve, for a consortium; by default only its own. A
    # request naming anything of another institution is answered as if it were
    # unknown.
    serves_institutions: tuple[_Code, ...] = ()

    # -- checkin (09/10), for sorters ------------------------------------------
    # Whether returning an item that was not on loan counts as success (ok 1)
    # or not (ok 0, alert, CV 99), as Koha's checked_in_ok.
    checkin_not_on_loan_ok: bool = True
    # Send CV 00 on a checkin that needs no routing (some sorters need a CV).
    cv_on_success_00: bool = False
    # Send CT on every checkin: where the item goes, or the return branch when
    # it stays there.
    always_send_ct: bool = False
    # CY, the patron a trapped item waits for: "masked" (the last four
    # characters, the rest as *), "full" or "none" (not sent).
    hold_patron_id: Literal["masked", "full", "none"] = "masked"
    # DA, the hold patron's name, from a template over the patron's fields
    # (see TEMPLATE NAMES in the docs); "" sends none.
    hold_patron_name: str = "{patron.surname}, {patron.firstname_initial}"
    # Refuse a checkin when the item is wanted for a hold (so staff handle it),
    # as Koha's holds_block_checkin; by default the hold traps the item.
    holds_block_checkin: bool = False
    # How many days back any return (09's return date, with or without no
    # block) may be dated; the loan ends, and is fined, then. 0 (the default)
    # dates a live return when it reaches the server; a date further back, or
    # in the future, is not believed and the return is dated now. Returns sent
    # with no block Y (replayed from a terminal's offline journal) are believed
    # within the larger of this and offline_days.
    offline_return_days: Annotated[int, Field(ge=0, le=365)] = 0
    # Sort-bin rules for CL, in order, first match wins (see sip2server.sortbins).
    sort_bin: tuple[dict[str, Any], ...] = ()

    # -- item information (17/18), for gates -----------------------------------
    # The security marker reported for items: 00 other, 01 none, 02 tattle-tape,
    # 03 whisper tape; per item type in security_markers.
    security_marker: Literal["00", "01", "02", "03"] = "02"
    security_markers: dict[str, Literal["00", "01", "02", "03"]] = Field(
        default_factory=dict
    )
    # ... and per item status (available, lost, missing, withdrawn, damaged,
    # in_processing, not_for_loan), which wins over the item type's.
    status_security_markers: dict[str, Literal["00", "01", "02", "03"]] = Field(
        default_factory=dict
    )

    # -- offline transactions (no block Y in 09 and 11) ------------------------
    # How many days back a request sent with no block Y (a terminal reporting
    # what it did while it could not reach the server) may be dated: 11's
    # transaction date becomes the loan's start (its due date counts from
    # there), 09's return date the return's. A date further back, or in the
    # future, is not believed: the request is dated when it arrives. 0 (the
    # default) dates every such request on arrival: a terminal may backdate
    # only when its account says so (a kiosk with an offline journal), since a
    # backdated return also waives that many days of fines.
    offline_days: Annotated[int, Field(ge=0, le=365)] = 0
    # What 11 with no block Y means: "record" (SIP2's meaning: the terminal has
    # already lent the item, so the loan is recorded over the loan limit,
    # fines, overdues, card blocks and expiry, a missing PIN, holds, transit
    # and this account's own checkout policies, each named in the loan's log
    # row; an unknown patron or item, a wrong or locked PIN, an item not for
    # loan, lost, missing or withdrawn, no loan rule, or a newer loan of the
    # item to someone else still refuse), only for a transaction date within
    # offline_days; or "refuse" (the default: no block is ignored, the request
    # judged as a live checkout, dated now). Give "record" only to accounts of
    # terminals that really lend offline: it lets them lend past every limit.
    no_block_checkouts: Literal["record", "refuse"] = "refuse"

    # -- checkout (11/12) -----------------------------------------------------
    # Item types this terminal may not lend at all.
    blocked_item_types: tuple[_Code, ...] = ()
    # Refuse checkout to a patron who has a lost item on loan.
    lost_items_block_checkout: bool = False
    # Refuse checkout to a patron who has an overdue item.
    overdues_block_checkout: bool = False
    # Item types, and patron categories, that are for use in the library only:
    # a checkout here is refused with a screen message saying so.
    inhouse_item_types: tuple[_Code, ...] = ()
    inhouse_patron_categories: tuple[_Code, ...] = ()

    # -- patron information (63/64) --------------------------------------------
    # How many entries of each list the summary asks for are sent when the 63
    # gives no BP/BQ range (BP alone: this many from BP on). The counts are
    # always whole; a terminal pages on with BP/BQ. However many are asked for,
    # a 64 never carries more than `sip2server.answers.patrons.MOST_LIST_ITEMS`
    # entries a list, nor more than fit in its `REPLY_BYTES`.
    default_list_items: Annotated[int, Field(ge=1, le=1000)] = 50

    # -- what is sent ---------------------------------------------------------
    # Field codes never sent (a required one is sent empty, as the spec needs
    # it present). With allow_fields set, optional fields not listed are not
    # sent either (screen messages AF and print lines AG are always allowed).
    hide_fields: tuple[_FieldCode, ...] = ()
    allow_fields: tuple[_FieldCode, ...] | None = None
    # Screen message (AF) per refusal reason, replacing the core's sentence; a
    # template over {patron.NAME} and {item.NAME} where the request names them.
    screen_messages: dict[str, str] = Field(default_factory=dict)
    # Rewrites of every AF sent, applied in order after screen_messages.
    screen_rewrites: tuple[ScreenRewrite, ...] = ()
    # Extra fields from templates: code -> template, e.g. {"PB" =
    # "{patron.home_branch_code}"}; patron fields go into 24, 26 and 64, item
    # fields into 10, 12, 18 and 30. An empty result is not sent.
    patron_fields: dict[_FieldCode, str] = Field(default_factory=dict)
    item_fields: dict[_FieldCode, str] = Field(default_factory=dict)
    # ISO 4217 code sent in BH and the only one accepted in 37; None uses the
    # institution's currency.
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None

    _rules: SortBinRules = PrivateAttr(default_factory=SortBinRules)
    _patron_templates: tuple[tuple[str, Template], ...] = PrivateAttr(default=())
    _item_templates: tuple[tuple[str, Template], ...] = PrivateAttr(default=())
    _name_template: Template | None = PrivateAttr(default=None)
    _screens: dict[str, Template] = PrivateAttr(default_factory=dict)
    _rewrites: tuple[tuple[regex.Pattern[str], str], ...] = PrivateAttr(default=())

    @field_validator("sort_bin")
    @classmethod
    def _sort_bins(
        cls, value: tuple[dict[str, Any], ...]
    ) -> tuple[dict[str, Any], ...]:
        try:
            parse_sort_bins(value)
        except SortBinError as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("screen_rewrites")
    @classmethod
    def _not_too_many(
        cls, value: tuple[ScreenRewrite, ...]
    ) -> tuple[ScreenRewrite, ...]:
        if len(value) > MAX_REWRITES:
            raise ValueError(
                f"{len(value)} rewrites; at most {MAX_REWRITES} are allowed (each "
                "runs on every screen message sent): join patterns with | or "
                "drop some"
            )
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                exponent(value)
            except CirculationRefused:
                raise ValueError(
                    f"{value!r} is not a currency the library system knows "
                    "(an ISO 4217 code such as GBP, EUR, USD; see ils/currency.py)"
                ) from None
        return value

    @field_validator("hide_fields", "allow_fields")
    @classmethod
    def _not_the_trailer(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for code in value or ():
            if code in _UNTOUCHABLE:
                raise ValueError(
                    f"{code} belongs to error detection and is not a field"
                )
        return value

    @field_validator("patron_fields", "item_fields")
    @classmethod
    def _not_the_messages_own(
        cls, value: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        # A second AA or AB would leave a terminal to guess which card or item
        # the reply is about; AY and AZ belong to the frame's error detection.
        own = (
            _OWN_PATRON_FIELDS
            if info.field_name == "patron_fields"
            else _OWN_ITEM_FIELDS
        )
        for code in value:
            if code in own:
                raise ValueError(
                    f"{code} is {own[code]}, which the server sends itself; a "
                    "template may not add a second one (use a code of your own, "
                    "such as one starting with X)"
                )
        return value

    @field_validator("status_security_markers")
    @classmethod
    def _known_statuses(cls, value: dict[str, str]) -> dict[str, str]:
        known = [status.value for status in ItemStatus]
        for status in value:
            if status not in known:
                raise ValueError(
                    f"{status!r} is not an item status; use one of: " + ", ".join(known)
                )
        return value

    @field_validator("screen_messages")
    @classmethod
    def _known_reasons(cls, value: dict[str, str]) -> dict[str, str]:
        known = {reason.value for reason in Refusal} | set(POLICY_REASONS)
        for reason in value:
            if reason not in known:
                raise ValueError(
                    f"{reason!r} is not a refusal reason; use one of: "
                    + ", ".join(sorted(known))
                )
        return value

    @model_validator(mode="after")
    def _compile(self) -> Self:
        try:
            patron = tuple(
                (code, Template(text, f"patron_fields.{code}", ("patron",)))
                for code, text in self.patron_fields.items()
            )
            item = tuple(
                (code, Template(text, f"item_fields.{code}", ("item",)))
                for code, text in self.item_fields.items()
            )
            screens = {
                reason: Template(text, f"screen_messages.{reason}", ("patron", "item"))
                for reason, text in self.screen_messages.items()
            }
            name = (
                Template(self.hold_patron_name, "hold_patron_name", ("patron",))
                if self.hold_patron_name
                else None
            )
        except TemplateError as error:
            raise ValueError(str(error)) from None
        self._rules = parse_sort_bins(self.sort_bin)
        self._screens = screens
        self._patron_templates = patron
        self._item_templates = item
        self._name_template = name
        self._rewrites = tuple(
            (regex.compile(rewrite.pattern), rewrite.replace)
            for rewrite in self.screen_rewrites
        )
        return self

    # -- what the mapping layer asks -------------------------------------------

    @property
    def sort_bins(self) -> SortBinRules:
        """The parsed sort-bin rules (empty: no CL is sent)."""
        return self._rules

    @property
    def patron_templates(self) -> tuple[tuple[str, Template], ...]:
        """Extra patron fields: (code, template) in configuration order."""
        return self._patron_templates

    @property
    def item_templates(self) -> tuple[tuple[str, Template], ...]:
        """Extra item fields: (code, template) in configuration order."""
        return self._item_templates

    @property
    def name_template(self) -> Template | None:
        """The template of DA, or None when DA is not sent."""
        return self._name_template

    def security_marker_for(self, item_type: str, status: str = "") -> str:
        """The security marker code for an item of this type and status."""
        if status in self.status_security_markers:
            return self.status_security_markers[status]
        return self.security_markers.get(item_type, self.security_marker)

    def screen_text(
        self,
        reason: str,
        default: str,
        values: Mapping[str, Mapping[str, str]] | None = None,
    ) -> str:
        """The screen message for a refusal reason, as this policy words it.

        The policy's text is a template over the patron's and the item's names
        (see `sip2server.templates`); `values` gives those known here, and a
        name not known is left empty.
        """
        template = self._screens.get(reason)
        return default if template is None else template.render(values or {})

    def rewrite(self, text: str, slow: Callable[[str], None] | None = None) -> str:
        """A screen message after this policy's rewrites (its first
        `REWRITE_LIMIT` characters: longer text is cut before rewriting).

        Each rewrite may run `REWRITE_TIMEOUT` seconds; one that runs longer
        is stopped and leaves the text as it was before it (the rewrites after
        it still run), and `slow` is called with its pattern. All of them
        together may run `REWRITE_BUDGET` seconds: once that is spent, the
        rest are skipped and `slow` is called with each of their patterns.
        """
        return self.rewrite_all((text,), slow)[0]

    def rewrite_all(
        self, texts: Sequence[str], slow: Callable[[str], None] | None = None
    ) -> tuple[str, ...]:
        """Several screen messages of one reply after this policy's rewrites,
        as `rewrite` makes each, sharing one `REWRITE_BUDGET` between them."""
        deadline = time.monotonic() + REWRITE_BUDGET
        done: list[str] = []
        for whole in texts:
            text = whole[:REWRITE_LIMIT]
            for pattern, replacement in self._rewrites:
                left = deadline - time.monotonic()
                if left <= 0:
                    if slow is not None:
                        slow(pattern.pattern)
                    continue
                try:
                    # concurrent: the match runs without the global lock (a str
                    # cannot change under it), so the reactor thread goes on.
                    text = pattern.sub(
                        replacement,
                        text,
                        timeout=min(REWRITE_TIMEOUT, left),
                        concurrent=True,
                    )
                except TimeoutError:
                    if slow is not None:
                        slow(pattern.pattern)
            done.append(text)
        return tuple(done)

    def hides(self, code: str, *, required: bool) -> bool:
        """Whether a field is left out (or, if required, sent empty)."""
        if code in self.hide_fields:
            return True
        return (
            not required
            and self.allow_fields is not None
            and code not in self.allow_fields
            and code not in _ALWAYS_ALLOWED
        )


DEFAULT_POLICY = TerminalPolicy()

__all__ = [
    "DEFAULT_POLICY",
    "MAX_REWRITES",
    "POLICY_REASONS",
    "REWRITE_BUDGET",
    "REWRITE_LIMIT",
    "REWRITE_TIMEOUT",
    "ScreenRewrite",
    "TerminalPolicy",
]
