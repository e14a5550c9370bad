"""A small template language for extra SIP2 fields: `{patron.home_branch_code}`.

Layer: `sip2server`. Imports only the standard library.

A template is text with replacement fields in `str.format` syntax, but each
field must be exactly `ROOT.NAME`, with ROOT one of the roots the template is
for (`patron` or `item`) and NAME one of the names listed below. A format spec
is allowed (`{patron.surname:.10}` cuts to ten characters, `{item.title:>20}`
pads); indexing, further attribute access, conversions (`!r`) and nested fields
are not. Templates are checked when the configuration is read, and rendered by
looking names up in a plain mapping: nothing of the program's objects can be
reached from a template.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

# What a template may use, with what each holds; the mapping layer fills them.
PATRON_NAMES: dict[str, str] = {
    "barcode": "the card number",
    "barcode_last4": "the card number's last four characters",
    "surname": "the surname",
    "firstname": "the first name",
    "firstname_initial": "the first name's first letter",
    "full_name": "first name and surname",
    "category_code": "the patron category code",
    "home_branch_code": "the home branch code",
    "email": "the e-mail address",
    "phone": "the phone number",
    "expires_on": "the card's expiry date, YYYYMMDD",
    "fines": "open fees as an amount, e.g. 2.50",
    "currency": "the currency code",
    "loans": "the number of items on loan",
    "overdue": "the number of overdue items",
}
ITEM_NAMES: dict[str, str] = {
    "barcode": "the item's barcode",
    "title": "the title",
    "author": "the author",
    "call_number": "the call number",
    "item_type_code": "the item type code",
    "media_type": "the 3-digit media type",
    "home_branch_code": "the home branch code",
    "current_branch_code": "the branch it is at",
    "location": "the shelving location",
    "collection": "the collection code",
    "status": "the item status (available, lost, ...)",
    "hold_queue_length": "pending holds it could fill",
    "in_transit_to": "the branch it is travelling to",
}
_NAMES = {"patron": PATRON_NAMES, "item": ITEM_NAMES}
# The largest width or precision a format spec may give: a SIP2 variable field
# holds at most 255 characters.
MAX_WIDTH = 255
_NUMBER = re.compile(r"[0-9]+")
_FIELD = re.compile(r"^(?P<root>[a-z]+)\.(?P<name>[a-z_0-9]+)$")


class TemplateError(ValueError):
    """A template that cannot be used; says which key and why."""


class Template:
    """A checked template, rendered from plain mappings of names to values."""

    __slots__ = ("_parts", "text")

    def __init__(self, text: str, key: str, roots: tuple[str, ...]) -> None:
        """Check `text`.

        Raises:
            TemplateError: naming `key`, for a field that is not ROOT.NAME with
                a known root and name, a conversion, a nested field, or text
                that is not valid format syntax.
        """
        self.text = text
        parts: list[tuple[str, tuple[str, str, str] | None]] = []
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as error:
            raise TemplateError(f"{key}: {error} in {text!r}") from None
        for literal, field, spec, conversion in parsed:
            if field is None:
                parts.append((literal, None))
                continue
            found = _FIELD.match(field)
            root = None if found is None else found["root"]
            if found is None or root not in roots:
                raise TemplateError(
                    f"{key}: {{{field}}} is not one of "
                    + ", ".join(f"{{{r}.NAME}}" for r in roots)
                )
            names = _NAMES[found["root"]]
            if found["name"] not in names:
                raise TemplateError(
                    f"{key}: {found['name']!r} is not a {root} name; use one of: "
                    + ", ".join(names)
                )
            if conversion is not None or (spec and "{" in spec):
                raise TemplateError(f"{key}: {{{field}}}: no conversions or nesting")
            # Checked before the spec is tried: trying a huge width allocates it.
            if any(
                len(number) > 3 or int(number) > MAX_WIDTH
                for number in _NUMBER.findall(spec or "")
            ):
                raise TemplateError(
                    f"{key}: {{{field}:{spec}}}: a width or precision over "
                    f"{MAX_WIDTH} is not allowed (no SIP2 field holds more)"
                )
            try:
                format("", spec or "")
            except ValueError as error:
                raise TemplateError(f"{key}: {{{field}:{spec}}}: {error}") from None
            parts.append((literal, (found["root"], found["name"], spec or "")))
        self._parts = tuple(parts)

    def render(self, values: Mapping[str, Mapping[str, str]]) -> str:
        """The text with every field replaced; a missing value is empty."""
        out: list[str] = []
        for literal, field in self._parts:
            out.append(literal)
            if field is not None:
                root, name, spec = field
                out.append(format(values.get(root, {}).get(name, ""), spec))
        return "".join(out)
