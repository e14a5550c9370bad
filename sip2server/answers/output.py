"""The account's output policy, applied to every response before it is sent:
hidden and allowed fields, and rewrites of screen messages.

Layer: `sip2server`. Imports the codec (and its layout table, to know which
attribute holds which field code); never `ils` or Twisted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sip2server.policy import TerminalPolicy
from sip2server.protocol import Message

# The codec's table of where each field code sits in each message type. It is
# private to the codec, but it is the one true list; copying it would drift.
from sip2server.protocol._layouts import BY_TYPE


def apply_policy(message: Message, policy: TerminalPolicy) -> Message:
    """`message` as this account's terminals get it.

    Screen messages (AF) pass through the policy's rewrites (one that becomes
    empty is dropped); a hidden field is left out, or sent empty when the spec
    requires it; with `allow_fields`, optional fields not listed are left out.
    Extra fields (templates, extensions) follow the same hide and allow rules.
    """
    changes: dict[str, Any] = {}
    screen = getattr(message, "screen_message", None)
    if screen and policy.screen_rewrites:
        rewritten = tuple(text for text in map(policy.rewrite, screen) if text)
        changes["screen_message"] = rewritten

    if policy.hide_fields or policy.allow_fields is not None:
        layout = BY_TYPE.get(type(message))
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
        extra = message.extra_fields
        kept = tuple(
            (code, value)
            for code, value in extra
            if not policy.hides(code, required=False)
        )
        if kept != extra:
            changes["extra_fields"] = kept

    return dataclasses.replace(message, **changes) if changes else message
