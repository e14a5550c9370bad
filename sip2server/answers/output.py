"""The account's output policy, applied to every response before it is sent:
hidden and allowed fields, and rewrites of screen messages.

Layer: `sip2server`. Imports the codec (and its layout table, to know which
attribute holds which field code); never `ils` or Twisted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from sip2server.policy import TerminalPolicy
from sip2server.protocol import Message

# The codec's table of where each field code sits in each message type. It is
# private to the codec, but it is the one true list; copying it would drift.
from sip2server.protocol._layouts import BY_TYPE


def apply_policy(
    message: Message,
    policy: TerminalPolicy,
    *,
    slow: Callable[[str], None] | None = None,
    rewrite: bool = True,
) -> Message:
    """`message` as this account's terminals get it.

    Screen messages (AF) pass through the policy's rewrites (one that becomes
    empty is dropped); a hidden field is left out, or sent empty when the spec
    requires it; with `allow_fields`, optional fields not listed are left out.
    Extra fields (templates, extensions) follow the same hide and allow rules,
    and one that names a field the message fills itself is left out.

    Args:
        message: the response as the mapping built it.
        policy: the account's policy.
        slow: called with the pattern of each rewrite that ran out of time
            (and so left its text as it was).
        rewrite: False to leave screen messages as they are (the fallback
            when rewriting failed).
    """
    changes: dict[str, Any] = {}
    layout = BY_TYPE.get(type(message))
    screen = getattr(message, "screen_message", None)
    if rewrite and screen and policy.screen_rewrites:
        # One time budget for the whole reply's screen messages.
        rewritten = policy.rewrite_all(screen, slow)
        changes["screen_message"] = tuple(text for text in rewritten if text)

    extra = _without_own_fields(message, layout)
    if policy.hide_fields or policy.allow_fields is not None:
        for field in () if layout is None else layout.variable:
            if not policy.hides(field.code, required=field.required):
                continue
            if field.repeat:
                changes[field.name] = ()
            elif field.required:
                # Only text can be sent empty; BX and the like stay as they are.
                if isinstance(getattr(message, field.name), str):
                    changes[field.name] = ""
            else:
                changes[field.name] = None
        for group in () if layout is None else layout.groups:
            if any(policy.hides(f.code, required=False) for f in group.fields):
                changes[group.name] = ()
        extra = tuple(
            (code, value)
            for code, value in extra
            if not policy.hides(code, required=False)
        )
    if extra != message.extra_fields:
        changes["extra_fields"] = extra

    return dataclasses.replace(message, **changes) if changes else message


def _without_own_fields(message: Message, layout: Any) -> tuple[tuple[str, str], ...]:
    """The extra fields, less any whose code the message fills itself.

    The configuration refuses templates for a message's own fields; this keeps
    a second AA or PB off the wire even if the server starts filling one later.
    """
    extra = message.extra_fields
    if not extra or layout is None:
        return extra
    filled = {
        field.code
        for field in layout.variable
        if getattr(message, field.name, None) not in (None, "", ())
    }
    if not filled.intersection(code for code, _ in extra):
        return extra
    return tuple((code, value) for code, value in extra if code not in filled)
