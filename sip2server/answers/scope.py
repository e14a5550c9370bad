"""Which institutions an account may serve, and whether a request stays in them.

Layer: `sip2server`. Imports `ils` (read functions, refusal reasons) and the
codec; never Twisted. One database holds every institution of a consortium:
a patron belongs to the institution of its home branch, an item to that of its
home branch, a branch to its own. An account serves its own institution and
those its policy lists in `serves_institutions`; a request that names a patron,
an item, a branch or an AO outside them is answered as if the patron or item
did not exist, so a terminal of one library learns nothing of another's.
A 15 that names its title by AJ finds it only among the records that have a
copy of a served institution (`sip2server.answers.holds`), and the core never
lets one institution's copy fill another's hold (`ils.holds`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ils.db import Database
from ils.institutions import owners
from ils.results import REFUSAL_MESSAGES, Refusal
from sip2server.answers.common import Desk, served_institutions
from sip2server.answers.holds import UNKNOWN_PICKUP
from sip2server.protocol import CheckinRequest, HoldRequest, Message

UNKNOWN_BRANCH_HERE = "That branch is not known here."


@dataclass(frozen=True, slots=True)
class OutOfReach:
    """What in a request lies outside the account's institutions.

    `what` is "institution" (the AO), "patron", "item" or "branch"; `owner` the
    institution it belongs to (for the operator's log, never the terminal);
    `text` the screen message the terminal gets, the same as for an unknown one.
    """

    what: str
    owner: str
    text: str


def out_of_reach(
    database: Database,
    branch_owner: Callable[[str], str | None],
    desk: Desk,
    message: Message,
) -> OutOfReach | None:
    """The first thing in `message` the desk's account may not touch, or None.

    Args:
        database: the library database the patron and item are read from.
        branch_owner: a branch code's institution code (None when unknown).
        desk: the request's account and policy.
        message: the request.
    """
    served = served_institutions(desk)
    patron = getattr(message, "patron_identifier", None) or ""
    item = getattr(message, "item_identifier", None) or ""
    unknown_patron = desk.policy.screen_text(
        Refusal.UNKNOWN_PATRON.value, REFUSAL_MESSAGES[Refusal.UNKNOWN_PATRON]
    )
    unknown_item = desk.policy.screen_text(
        Refusal.UNKNOWN_ITEM.value, REFUSAL_MESSAGES[Refusal.UNKNOWN_ITEM]
    )

    # An AO naming an institution the account does not serve.
    named = getattr(message, "institution_id", None) or ""
    if named and named not in served:
        return OutOfReach(
            "institution", named, unknown_patron if patron else unknown_item
        )

    patron_owner, item_owner = owners(database, patron=patron, item=item)
    if patron_owner is not None and patron_owner not in served:
        return OutOfReach("patron", patron_owner, unknown_patron)
    if item_owner is not None and item_owner not in served:
        return OutOfReach("item", item_owner, unknown_item)

    # Where a hold is collected, and where a checkin happens.
    branch, text = "", UNKNOWN_BRANCH_HERE
    if isinstance(message, HoldRequest):
        branch, text = message.pickup_location or "", UNKNOWN_PICKUP
    elif isinstance(message, CheckinRequest):
        branch = message.current_location or ""
    if branch:
        owner = branch_owner(branch)
        if owner is not None and owner not in served:
            return OutOfReach("branch", owner, text)
    return None
