"""Field groups: variable fields that repeat together, one run per element of a
tuple attribute. The only group is the Gossip fee details FA to FG of 64.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

A run is written in the group's field order. Its first field (FA) is written in
every run, empty for None, so that a reader can tell runs apart; the others are
left out when None. A reader starts a new run at a field the open run already
holds, so runs written that way split at each FA, while a run without FA or
with its fields in another order still reads as one element.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._fields import BadValueError, Text, invalid_value
from ._layout_types import FieldGroup, Layout, VariableField
from ._output import DelimiterPolicy, wire_pieces
from .errors import LocalProtocolError

#: A grouped field as the reader finds it: its group's index, the field, and
#: whether it is the group's first field.
_Member = tuple[int, VariableField, bool]


@dataclasses.dataclass(frozen=True, slots=True)
class GroupReading:
    """What reading one message type's groups needs, worked out once."""

    groups: tuple[FieldGroup, ...]
    by_code: dict[str, _Member]
    #: `|` and the first letter of each grouped code (`|F`): a frame without
    #: any of them holds no grouped field and is left alone.
    markers: tuple[str, ...]


def group_reading(layout: Layout) -> GroupReading | None:
    """The reading plan of a layout's groups, or None when it has none."""
    if not layout.groups:
        return None
    by_code = {
        field.code: (index, field, position == 0)
        for index, group in enumerate(layout.groups)
        for position, field in enumerate(group.fields)
    }
    overlap = by_code.keys() & {field.code for field in layout.variable}
    assert not overlap, f"{layout.message_type.__name__}: {overlap} grouped and not"
    return GroupReading(
        groups=layout.groups,
        by_code=by_code,
        markers=tuple(sorted({"|" + code[0] for code in by_code})),
    )


def may_hold_groups(reading: GroupReading, text: str) -> bool:
    """Whether a field in `text` may start with a grouped code's letter."""
    probe = "|" + text
    # A plain loop: any() over a generator costs more than the scan on every 64.
    for marker in reading.markers:  # noqa: SIM110
        if marker in probe:
            return True
    return False


def read_groups(
    reading: GroupReading, command: str, text: str, singles: dict[str, Any]
) -> str:
    """Read the grouped fields of `text` into `singles`; return the other fields.

    Other fields between grouped ones do not end a run. An empty first field
    reads as None, because that is how it is written for None.

    Raises:
        InvalidFieldValue: a grouped field holds text its converter refuses
            (an FC that is not a dd.MM.yyyy day).
    """
    rest: list[str] = []
    # Per group index, the attribute values of each run read so far.
    runs: dict[int, list[dict[str, Any]]] = {}
    for segment in text.split("|"):
        member = reading.by_code.get(segment[:2])
        if member is None:
            rest.append(segment)
            continue
        index, field, first = member
        value = segment[2:]
        values = runs.setdefault(index, [])
        if not values or field.name in values[-1]:
            values.append({})
        values[-1][field.name] = _read(command, field, value, first=first)

    for index, values in runs.items():
        group = reading.groups[index]
        singles[group.name] = tuple(group.element_type(**run) for run in values)
    return "|".join(rest)


def _read(command: str, field: VariableField, value: str, *, first: bool) -> Any:
    if value == "" and first:
        return None
    if type(field.converter) is Text:
        return value
    try:
        return field.converter.read(value)
    except BadValueError as error:
        raise invalid_value(command, field.code, value, error) from None


def write_group(
    group: FieldGroup, elements: Any, policy: DelimiterPolicy, fit_to: str | None
) -> list[str]:
    """One run of the group's fields per element, in the group's field order.

    Raises:
        LocalProtocolError: `elements` is not a tuple of the group's element
            type, or a value does not fit its field.
    """
    if isinstance(elements, str) or not isinstance(elements, tuple):
        raise LocalProtocolError(f"{group.name} must be a tuple")
    first = group.fields[0]
    parts: list[str] = []
    for element in elements:
        if not isinstance(element, group.element_type):
            kind = group.element_type.__name__
            raise LocalProtocolError(f"{group.name} holds {element!r}, not a {kind}")
        for field in group.fields:
            value = getattr(element, field.name)
            if value is None:
                if field is first:
                    parts.append(f"{field.code}|")
            elif type(field.converter) is Text:
                if not isinstance(value, str):
                    raise LocalProtocolError(
                        f"{field.name}: expected a str, not {value!r}"
                    )
                parts.append(f"{field.code}{wire_pieces(value, policy, fit_to)[0]}|")
            else:
                parts.append(f"{field.code}{_write(field, value)}|")
    return parts


def _write(field: VariableField, value: Any) -> str:
    try:
        text: str = field.converter.write(value)
    except LocalProtocolError as error:
        raise LocalProtocolError(f"{field.name}: {error}") from None
    return text
