"""A public, read-only view of the codec's message layouts.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

Tools that build or check frames field by field (`ils sip conform`, a test
plan, a troubleshooting screen) need to know, for a command, which fixed fields
it has (name, width, where each starts) and which variable fields (code, name,
repeatable or not, required or not). `layout_view` gives that as frozen values
built once from the codec's own layouts, so they cannot drift from what the
encoder and decoder do, and changing them changes nothing in the codec.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from ._fields import (
    BadValueError,
    Code,
    Converter,
    Date,
    DayMonthYear,
    Flags,
    Number,
    OneZero,
    Text,
    Version,
    YesNo,
    invalid_value,
)
from ._layout_types import Layout, VariableField
from ._layouts import LAYOUTS
from ._messages_patron import Message


class FieldKind(enum.Enum):
    """What sort of value a field carries on the wire."""

    #: Free text.
    TEXT = "text"
    #: An 18-character date, `YYYYMMDDZZZZHHMMSS`.
    DATE = "date"
    #: A one-character flag, Y/N or 1/0.
    FLAG = "flag"
    #: A count, zero-padded when fixed.
    COUNT = "count"
    #: One code of an enumeration (circulation status, fee type, ...).
    CODE = "code"
    #: A positional string of Y/N flags (patron status, BX, summary).
    FLAGS = "flags"
    #: A protocol version such as `2.00`.
    VERSION = "version"
    #: A day written `dd.MM.yyyy` (the Gossip FC).
    DAY = "day"


_KINDS: dict[type[Any], FieldKind] = {
    Text: FieldKind.TEXT,
    Date: FieldKind.DATE,
    YesNo: FieldKind.FLAG,
    OneZero: FieldKind.FLAG,
    Number: FieldKind.COUNT,
    Code: FieldKind.CODE,
    Flags: FieldKind.FLAGS,
    Version: FieldKind.VERSION,
    DayMonthYear: FieldKind.DAY,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FieldView:
    """One field of one message, as the wire carries it.

    Attributes:
        command: the message's two-character command code.
        name: the attribute of the message class (of `FeeDetail` for a field
            of the fee details group).
        kind: what sort of value it carries.
        code: the two-letter code of a variable field; None for a fixed one.
        width: the characters a fixed field takes; None for a variable one.
        offset: where a fixed field starts in the frame (the command code is
            characters 0 and 1, so the first fixed field starts at 2); None for
            a variable one.
        required: the encoder always writes this variable field (fixed fields
            are always written, and say False here).
        repeatable: the field may appear several times (a tuple attribute, or
            a field of a group, one run per element).
        group: the tuple attribute a group field belongs to (`fee_details`),
            or None.
    """

    command: str
    name: str
    kind: FieldKind
    code: str | None = None
    width: int | None = None
    offset: int | None = None
    required: bool = False
    repeatable: bool = False
    group: str | None = None
    converter: Converter = dataclasses.field(repr=False, compare=False)

    def read(self, text: str) -> Any:
        """The value the decoder makes of this field's wire text.

        Raises:
            InvalidFieldValue: the text is not a value of this field
                (`UnknownCode` for an undefined code).
        """
        try:
            return self.converter.read(text)
        except BadValueError as error:
            raise invalid_value(
                self.command, self.code or self.name, text, error
            ) from None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LayoutView:
    """Where each field of one message sits on the wire.

    Attributes:
        command: the two-character command code.
        message_type: the message class.
        fixed: the fixed fields in wire order.
        variable: the variable fields in the order the encoder writes them,
            then the fields of groups (the fee details FA to FG of 64).
    """

    command: str
    message_type: type[Message]
    fixed: tuple[FieldView, ...]
    variable: tuple[FieldView, ...]

    @property
    def fixed_width(self) -> int:
        """Characters between the command code and the first variable field."""
        return sum(field.width or 0 for field in self.fixed)

    def field(self, key: str) -> FieldView | None:
        """The field with this two-letter code, else with this attribute name
        (fixed fields first), or None."""
        for field in self.variable:
            if field.code == key:
                return field
        for field in (*self.fixed, *self.variable):
            if field.name == key and field.group is None:
                return field
        return None


def _variable(
    command: str, field: VariableField, group: str | None = None
) -> FieldView:
    return FieldView(
        command=command,
        name=field.name,
        kind=_KINDS[type(field.converter)],
        code=field.code,
        required=field.required,
        repeatable=field.repeat or group is not None,
        group=group,
        converter=field.converter,
    )


def _view(layout: Layout) -> LayoutView:
    command = layout.message_type.command
    fixed: list[FieldView] = []
    offset = 2
    for field in layout.fixed:
        fixed.append(
            FieldView(
                command=command,
                name=field.name,
                kind=_KINDS[type(field.converter)],
                width=field.width,
                offset=offset,
                converter=field.converter,
            )
        )
        offset += field.width
    variable = [_variable(command, field) for field in layout.variable]
    for group in layout.groups:
        variable.extend(_variable(command, field, group.name) for field in group.fields)
    return LayoutView(
        command=command,
        message_type=layout.message_type,
        fixed=tuple(fixed),
        variable=tuple(variable),
    )


_VIEWS: tuple[LayoutView, ...] = tuple(_view(layout) for layout in LAYOUTS)
_BY_COMMAND: dict[str, LayoutView] = {view.command: view for view in _VIEWS}
_BY_TYPE: dict[type[Message], LayoutView] = {view.message_type: view for view in _VIEWS}


def layout_view(message: str | type[Message]) -> LayoutView | None:
    """The layout of a message, given its command code (`"64"`) or its class
    (`PatronInformationResponse`); None when SIP2 2.00 has no such message."""
    if isinstance(message, str):
        return _BY_COMMAND.get(message)
    return _BY_TYPE.get(message)


def layout_views() -> tuple[LayoutView, ...]:
    """The layouts of all 31 messages of SIP2 2.00, in no particular order."""
    return _VIEWS
