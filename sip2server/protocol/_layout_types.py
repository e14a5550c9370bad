"""The shapes a message layout is built from: fixed fields, variable fields and
the layout of one message type.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._fields import Converter, Text
from ._messages_patron import Message


@dataclasses.dataclass(frozen=True, slots=True)
class FixedField:
    """A fixed-width field, identified by its attribute name."""

    name: str
    converter: Converter

    @property
    def width(self) -> int:
        """The number of characters the field takes on the wire."""
        assert self.converter.width is not None
        return self.converter.width


@dataclasses.dataclass(frozen=True, slots=True)
class VariableField:
    """A variable field: two-letter code, value, `|`."""

    code: str
    name: str
    converter: Converter = dataclasses.field(default_factory=Text)
    repeat: bool = False
    required: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class FieldGroup:
    """Variable fields that travel together, one run of them per element of a
    tuple attribute (the Gossip fee details FA to FG of 64).

    Each field's `name` is an attribute of `element_type`. A run is written in
    the order of `fields`, leaving out fields whose value is None, except the
    first: it is written in every run (empty for None, and an empty one reads as
    None), so that every run holds it. On input a new run starts at a field the
    run being read already holds.
    """

    name: str
    element_type: type[Any]
    fields: tuple[VariableField, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Where each attribute of one message type sits on the wire."""

    message_type: type[Message]
    fixed: tuple[FixedField, ...]
    variable: tuple[VariableField, ...]
    #: Written after `variable`, before the extra fields.
    groups: tuple[FieldGroup, ...] = ()

    @property
    def fixed_width(self) -> int:
        """Characters between the command code and the first variable field."""
        return sum(field.width for field in self.fixed)

    def by_code(self) -> dict[str, VariableField]:
        """The variable fields keyed by their two-letter code."""
        return {field.code: field for field in self.variable}
