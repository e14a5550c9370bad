"""Turning a frame's payload into a message value, and a message into a wire frame.

Layer: the sans-I/O SIP2 codec. Imports only the standard library.

Reading is liberal, as real clients need (docs/sip2-conformance.md lists each
habit); writing follows the spec.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Any, TypeVar

from ._checksum import checksum
from ._fields import BadValueError, Converter, Text, invalid_value
from ._groups import (
    GroupReading,
    group_reading,
    may_hold_groups,
    read_groups,
    write_group,
)
from ._layout_types import FieldGroup, Layout, VariableField
from ._layouts import BY_COMMAND, BY_TYPE
from ._messages_patron import Message
from ._output import (
    DelimiterPolicy,
    FieldOrder,
    encoding_problem,
    wire_pieces,
)
from .errors import (
    ChecksumMismatch,
    InvalidFieldValue,
    LocalProtocolError,
    MalformedMessage,
    UnexpectedTls,
    UnknownCommand,
)

# The error-detection trailer at the very end of a frame: `AY<digit>AZ<hex>`, or
# `AZ<hex>` alone (96 and 97 carry no sequence; Palace's client drops AY when it
# resends). Up to four hex digits in either case (clients.md §1.6).
_HEX_BYTES = frozenset(b"0123456789ABCDEFabcdef")
_DIGITS = frozenset(b"0123456789")

_VALID_CODE = re.compile(r"[A-Za-z0-9]{2}")

_FALLBACK_ENCODING = "latin-1"

_NO_SEQUENCE = frozenset({"96", "97"})

# The known variable fields of each message sorted by code, for FieldOrder.ALPHABETICAL.
_ALPHABETICAL = {
    message_type: tuple(sorted(layout.variable, key=lambda field: field.code))
    for message_type, layout in BY_TYPE.items()
}

# Each message's fixed fields as (name, converter, width), in wire order.
_FIXED_WRITING = {
    message_type: tuple(
        (field.name, field.converter, field.width) for field in layout.fixed
    )
    for message_type, layout in BY_TYPE.items()
}

_E = TypeVar("_E", bound=enum.Enum)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """A decoded frame: the message and its error-detection trailer.

    Attributes:
        message: the typed message.
        sequence: the AY digit, or None when the frame had none.
        checksum: the AZ value exactly as sent, or None.
        error_detection: whether the frame carried AY or AZ; a server answers
            with a trailer of its own when it did.
        encoding: the text encoding actually used: the one asked for, or
            latin-1 when the bytes were not valid in it.
    """

    message: Message
    sequence: int | None
    checksum: str | None
    error_detection: bool
    encoding: str


def decode(payload: bytes, *, encoding: str = "utf-8") -> Decoded:
    """Decode one frame's payload (without its terminator) into a message.

    Raises:
        ChecksumMismatch: AZ does not match the bytes (reply 96).
        UnknownCommand: the command code is not one of SIP2 2.00 (reply 96).
        MalformedMessage: the frame is too short or a field has no code (96).
        InvalidFieldValue: a field holds a value it may not hold; `UnknownCode`
            when a coded field holds an undefined code (a negative reply).
        UnexpectedTls: the payload is a TLS handshake (close the connection).
    """
    if payload[:2] == b"\x16\x03":
        raise UnexpectedTls("a TLS handshake arrived on a plain SIP2 port")

    body, sequence, sent_checksum = _split_trailer(payload)
    text, used_encoding = _to_text(body, encoding)

    command = text[:2]
    plan = _PLANS.get(command)
    if plan is None:
        if len(text) < 2:
            raise MalformedMessage(f"frame too short for a command code: {text!r}")
        raise UnknownCommand(f"unknown command {command!r}")

    fields_start = 2 + plan.fixed_width
    if len(text) < fields_start:
        raise MalformedMessage(
            f"{command} needs {plan.fixed_width} characters of fixed fields, "
            f"got {len(text) - 2}",
            command=command,
        )

    values = _read_fixed(plan, text)
    variable = text[fields_start:]
    groups = plan.groups
    if groups is not None and may_hold_groups(groups, variable):
        variable = read_groups(groups, plan.command, variable, values)
    _read_variable(plan, variable, values)
    message = plan.message_type(**values)
    return Decoded(
        message=message,
        sequence=sequence,
        checksum=sent_checksum,
        error_detection=sent_checksum is not None,
        encoding=used_encoding,
    )


def encode(
    message: Message,
    *,
    sequence: int | None = None,
    error_detection: bool = False,
    encoding: str = "utf-8",
    terminator: bytes = b"\r",
    delimiter_policy: DelimiterPolicy = DelimiterPolicy.SPACE,
    field_order: FieldOrder = FieldOrder.SPEC,
) -> bytes:
    """Encode a message as a whole wire frame, terminator included.

    Every variable field ends with `|`. Values are made safe (control characters
    become spaces; a `|` becomes what `delimiter_policy` says) and cut to 255
    characters, except screen messages and print lines, which are split into
    several fields instead. Characters the encoding cannot hold are
    transliterated (`Zoë` -> `Zoe` in ASCII) or, failing that, become `?`.
    `field_order` orders the known variable fields; field groups (the fee
    details FA to FG of 64) follow them in their fixed order, then the extra
    fields in their own order.

    With `error_detection`, `AY<sequence>AZ<checksum>` is appended (`AZ` alone
    when `sequence` is None, and always for 96 and 97, which the spec forbids to
    carry a sequence), the checksum computed over the encoded bytes.

    Raises:
        LocalProtocolError: a value does not fit its field, `sequence` is not a
            digit or is given without `error_detection`, the terminator is not
            CR, CRLF or LF, the encoding cannot carry SIP2, or an option is not
            one of its enum's values.
    """
    layout = BY_TYPE.get(type(message))
    if layout is None:
        raise LocalProtocolError(f"{type(message).__name__} is not a SIP2 message")
    if terminator not in (b"\r", b"\r\n", b"\n"):
        raise LocalProtocolError(f"terminator {terminator!r} is not CR, CRLF or LF")
    # D16: AY is only written as part of error detection, never alone.
    if sequence is not None and not error_detection:
        raise LocalProtocolError("a sequence number is only sent with error detection")
    if sequence is not None and sequence not in range(10):
        raise LocalProtocolError(f"sequence {sequence!r} is not a digit 0-9")
    problem = encoding_problem(encoding)
    if problem is not None:
        raise LocalProtocolError(problem)
    policy = _option(DelimiterPolicy, delimiter_policy, "delimiter_policy")
    order = _option(FieldOrder, field_order, "field_order")

    if layout.message_type.command in _NO_SEQUENCE:
        # SIP2 2.00: the resend messages never carry a sequence number, only AZ.
        sequence = None

    head = layout.message_type.command + _write_fixed(layout, message)
    fields = (
        _ALPHABETICAL[layout.message_type]
        if order is FieldOrder.ALPHABETICAL
        else layout.variable
    )
    groups = layout.groups
    text = head + "".join(_write_variable(fields, groups, message, policy, None))
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        # Some value holds characters the encoding cannot: write the values again,
        # transliterated before they are made safe and cut, so that neither a
        # transliteration nor a cut can break the 255 limit or add a `|`.
        text = head + "".join(
            _write_variable(fields, groups, message, policy, encoding)
        )
        # Fixed fields hold codes and digits; `?` for anything else keeps widths.
        data = text.encode(encoding, errors="replace")

    if error_detection:
        data += b"AZ" if sequence is None else f"AY{sequence}AZ".encode("ascii")
        data += checksum(data).encode("ascii")
    return data + terminator


def _option(kind: type[_E], value: Any, name: str) -> _E:
    if type(value) is kind:
        return value
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in kind)
        raise LocalProtocolError(f"{name} {value!r} is not one of {choices}") from None


# --- decoding ----------------------------------------------------------------------


def _split_trailer(payload: bytes) -> tuple[bytes, int | None, str | None]:
    # `AZ` and one to four hex digits end the frame (hex has no `Z`, so the last
    # `AZ` is the one); `AY<digit>` may come before it.
    size = len(payload)
    az = payload.rfind(b"AZ", max(size - 6, 0))
    sent_bytes = payload[az + 2 :]
    if az < 0 or not sent_bytes or not _HEX_BYTES.issuperset(sent_bytes):
        return payload, None, None
    if az >= 3 and payload[az - 3 : az - 1] == b"AY" and payload[az - 1] in _DIGITS:
        start, sequence = az - 3, payload[az - 1] - 0x30
    elif _trailer_stands_alone(payload, az):
        start, sequence = az, None
    else:
        return payload, None, None

    sent = sent_bytes.decode("ascii")
    covered = payload[: az + 2]
    # One to four hex digits in either case are accepted (D7); the sum decides.
    if (sum(covered) + int(sent, 16)) & 0xFFFF:
        raise ChecksumMismatch(
            f"AZ{sent} does not match the frame (expected {checksum(covered)})",
            command=_command_of(payload),
        )
    return payload[:start], sequence, sent


def _trailer_stands_alone(payload: bytes, start: int) -> bool:
    """Whether an `AZxxxx` without AY at the end is a trailer, not a value's end.

    `AY<d>AZ<hex>` at the end is taken as a trailer wherever it starts. `AZ<hex>`
    alone must follow a `|` or the command code (96, 97), because a value may
    well end in something like `PLAZA1` when the last `|` is missing.
    """
    if start == 2:
        return True
    if payload[start - 1 : start] == b"|":
        return True
    layout = BY_COMMAND.get(_command_of(payload) or "")
    return layout is not None and start == 2 + layout.fixed_width


def _command_of(payload: bytes) -> str | None:
    command = payload[:2].decode("latin-1")
    return command if command in BY_COMMAND else None


def _to_text(body: bytes, encoding: str) -> tuple[str, str]:
    # Bytes that are not valid in the session's encoding most often come from a
    # single-byte client (latin-1, cp850): read them as latin-1, which keeps every
    # byte as one character, rather than lose them to replacement characters.
    try:
        return body.decode(encoding), encoding
    except UnicodeDecodeError:
        # Deviation D10: undecodable bytes fall back to latin-1.
        return body.decode(_FALLBACK_ENCODING), _FALLBACK_ENCODING


@dataclasses.dataclass(frozen=True, slots=True)
class _ReadPlan:
    """What decoding one message type needs, worked out once from its layout."""

    message_type: type[Message]
    command: str
    fixed_width: int
    #: (name, converter, start, end) of each fixed field, offsets in the frame.
    fixed: tuple[tuple[str, Converter, int, int], ...]
    by_code: dict[str, VariableField]
    #: Required fields that may be None (AC, AD, AP): empty reads as None (D4).
    empty_means_none: frozenset[str]
    #: Fields without a default: read from "" when the frame lacks them (D3).
    needed: tuple[VariableField, ...]
    #: How to read the field groups (FA..FG of 64); None for most messages.
    groups: GroupReading | None


def _read_plan(layout: Layout) -> _ReadPlan:
    no_default = {
        attribute.name
        for attribute in dataclasses.fields(layout.message_type)
        if attribute.default is dataclasses.MISSING
        and attribute.default_factory is dataclasses.MISSING
    }
    # Decoding keeps fixed and variable values in one dict, keyed by name.
    shared = {field.name for field in layout.fixed} & {
        field.name for field in layout.variable
    }
    assert not shared, f"{layout.message_type.__name__}: {shared} fixed and variable"
    fixed = []
    position = 2
    for field in layout.fixed:
        fixed.append((field.name, field.converter, position, position + field.width))
        position += field.width
    return _ReadPlan(
        message_type=layout.message_type,
        command=layout.message_type.command,
        fixed_width=layout.fixed_width,
        fixed=tuple(fixed),
        by_code=layout.by_code(),
        empty_means_none=frozenset(
            field.name
            for field in layout.variable
            if field.required and field.name not in no_default
        ),
        needed=tuple(field for field in layout.variable if field.name in no_default),
        groups=group_reading(layout),
    )


_PLANS = {command: _read_plan(layout) for command, layout in BY_COMMAND.items()}


def _read_fixed(plan: _ReadPlan, text: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, converter, start, end in plan.fixed:
        try:
            values[name] = converter.read(text[start:end])
        except BadValueError as error:
            raise _value_error(plan, name, text[start:end], error) from None
    return values


def _read_variable(  # noqa: PLR0912 - one branch per documented input rule
    plan: _ReadPlan, text: str, singles: dict[str, Any]
) -> None:
    """Add the variable fields in `text` to `singles`, which holds the fixed ones."""
    known = plan.by_code
    repeats: dict[str, list[str]] = {}
    extra: list[tuple[str, str]] = []

    # Deviation D2 (docs/sip2-conformance.md): a missing final `|`, a `|` after
    # the fixed part or before AY are accepted; remove when no client sends them.
    # Empty segments are the harmless `|` habits: one right after the fixed part,
    # one before AY, or `||`.
    for segment in text.split("|"):
        if not segment:
            continue
        code, value = segment[:2], segment[2:]
        field = known.get(code)
        if field is None:
            # Deviation D12: unknown codes are kept as they came, so that
            # nothing the client sent is lost; only a real code is accepted.
            _check_unknown_code(plan, code, segment)
            extra.append((code, value))
        elif field.repeat:
            repeats.setdefault(field.name, []).append(value)
        elif field.name in singles and singles[field.name] not in (None, ""):
            # Deviation D12: so are repeats of a single-valued field after the
            # first one with a value.
            extra.append((code, value))
        elif field.name in singles and not value:
            # An empty repeat of a field that has no value yet adds nothing; kept,
            # it would become the field itself when the message is re-encoded.
            continue
        elif value == "" and field.name in plan.empty_means_none:
            # Deviation D4: an empty AC, AD or AP means "not given", like a
            # missing one (Koha and FOLIO do not tell them apart either). The
            # encoder writes None as an empty field, so both read back as None.
            singles[field.name] = None
        elif type(field.converter) is Text:
            # Free text reads as itself; most fields are text, so skip the call.
            singles[field.name] = value
        else:
            singles[field.name] = _read_value(plan, code, field.converter, value)

    for name, items in repeats.items():
        singles[name] = tuple(items)
    for field in plan.needed:
        # Deviation D3: a missing required field is read as empty, not refused,
        # as Koha, Evergreen and FOLIO do; the mapping layer refuses the request.
        if field.name not in singles:
            singles[field.name] = _read_value(plan, field.code, field.converter, "")
    if extra:
        singles["extra_fields"] = tuple(extra)


def _check_unknown_code(plan: _ReadPlan, code: str, segment: str) -> None:
    if not (len(code) == 2 and code.isascii() and code.isalnum()):
        raise MalformedMessage(
            f"field {segment[:10]!r} does not start with a two-letter code",
            command=plan.command,
        )
    if code in ("AY", "AZ"):
        raise MalformedMessage(
            f"{code} appears before the end of the frame", command=plan.command
        )


def _read_value(plan: _ReadPlan, name: str, converter: Converter, raw: str) -> Any:
    try:
        return converter.read(raw)
    except BadValueError as error:
        raise _value_error(plan, name, raw, error) from None


def _value_error(
    plan: _ReadPlan, name: str, raw: str, error: BadValueError
) -> InvalidFieldValue:
    return invalid_value(plan.command, name, raw, error)


# --- encoding ----------------------------------------------------------------------


def _write_fixed(layout: Layout, message: Message) -> str:
    parts: list[str] = []
    for name, converter, width in _FIXED_WRITING[layout.message_type]:
        text = _write_value(name, converter, getattr(message, name))
        if len(text) != width:
            raise LocalProtocolError(f"{name} {text!r} is not {width} wide")
        parts.append(text)
    return "".join(parts)


def _write_variable(
    fields: tuple[VariableField, ...],
    groups: tuple[FieldGroup, ...],
    message: Message,
    policy: DelimiterPolicy,
    fit_to: str | None,
) -> list[str]:
    parts: list[str] = []
    for field in fields:
        value = getattr(message, field.name)
        if field.repeat:
            parts.extend(_write_repeated(field, value, policy, fit_to))
        elif value is None:
            if field.required:
                parts.append(f"{field.code}|")
        elif type(field.converter) is Text:
            if not isinstance(value, str):
                raise LocalProtocolError(f"{field.name}: expected a str, not {value!r}")
            # Deviation D13: cut at the spec's 255 characters, not refused.
            parts.append(f"{field.code}{wire_pieces(value, policy, fit_to)[0]}|")
        else:
            parts.append(
                f"{field.code}{_write_value(field.name, field.converter, value)}|"
            )
    for group in groups:
        parts.extend(write_group(group, getattr(message, group.name), policy, fit_to))
    for code, value in message.extra_fields:
        if not _VALID_CODE.fullmatch(code):
            raise LocalProtocolError(f"extra field code {code!r} is not two letters")
        if not isinstance(value, str):
            raise LocalProtocolError(f"extra field {code} holds {value!r}, not a str")
        parts.append(f"{code}{wire_pieces(value, policy, fit_to)[0]}|")
    return parts


def _write_repeated(
    field: VariableField, values: Any, policy: DelimiterPolicy, fit_to: str | None
) -> list[str]:
    if isinstance(values, str) or not isinstance(values, tuple):
        raise LocalProtocolError(f"{field.name} must be a tuple of str")
    parts: list[str] = []
    for value in values:
        if not isinstance(value, str):
            raise LocalProtocolError(f"{field.name} holds {value!r}, not a str")
        # A long screen message or print line is split, not cut (as FOLIO does).
        parts.extend(
            f"{field.code}{piece}|" for piece in wire_pieces(value, policy, fit_to)
        )
    return parts


def _write_value(name: str, converter: Any, value: Any) -> str:
    try:
        text: str = converter.write(value)
    except LocalProtocolError as error:
        raise LocalProtocolError(f"{name}: {error}") from None
    return text
