"""Variables and captures of a conformance plan: filling in `${name}`, reading
`[steps.capture]` tables, and the errors and checks both kinds of table share.

Layer: `sip2server`, beside the SIP2 client. Imports only the codec and the
standard library: no `ils`, no Twisted.

A variable is known before the run (defaults, `[variables]`, `--var`) or
captured from a reply by a step; a step may use a captured one only after the
step that captures it, and is then built again with its value when it runs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sip2server.protocol import layout_view

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CODE = re.compile(r"[A-Z]{2}")
_CAPTURE_KEYS = frozenset({"field", "index", "pattern", "extension"})


class PlanError(ValueError):
    """A plan file that cannot be run: the message names the file, step and key."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Capture:
    """One value a step takes from its reply into a variable."""

    #: The variable it sets, used as ${variable} by later steps.
    variable: str
    #: A two-letter field code, or the name of a fixed field.
    field: str
    #: True when `field` names a fixed field.
    fixed: bool = False
    #: Which value of a repeated field (1 is the first); with `pattern`, which
    #: of the values that match it.
    index: int = 1
    #: Keep only values this matches; its group (or the whole match) is taken.
    pattern: re.Pattern[str] | None = None

    def describe(self) -> str:
        """The field as a report names it: `FE`, `AU (value 2)`, `AV matching ...`."""
        text = self.field
        if self.pattern is not None:
            text += f" matching {self.pattern.pattern!r}"
        if self.index != 1:
            text += f" (value {self.index})"
        return text


class Where:
    """Builds error messages that name the file (unless left out) and the key."""

    def __init__(self, path: Path, *, show_path: bool = True) -> None:
        self.path = path
        self.show_path = show_path

    def error(self, key: str, problem: str) -> PlanError:
        """The error for `problem` at `key` (`steps[3] (pay).fields.CG`)."""
        if not self.show_path:
            return PlanError(f"{key}: {problem}")
        return PlanError(f"{self.path}: {key}: {problem}")


@dataclasses.dataclass(frozen=True, slots=True)
class Scope:
    """The variables a step may use: known ones with their values, and those
    captured by earlier steps (filled in at run time) or by this step or later
    ones (an error to use), each with the step that captures it first."""

    values: Mapping[str, str]
    captured_before: Mapping[str, int]
    captured_later: Mapping[str, int]


def first_captures(steps: list[Any]) -> dict[str, int]:
    """Which step first captures each variable (the capture tables are checked
    in full by `read_captures`)."""
    found: dict[str, int] = {}
    for number, data in enumerate(steps, start=1):
        if isinstance(data, dict) and isinstance(data.get("capture"), dict):
            for name in data["capture"]:
                found.setdefault(name, number)
    return found


def check_keys(
    where: Where, prefix: str, data: Mapping[str, Any], known: frozenset[str]
) -> None:
    """Raise on the first key of `data` not in `known`, listing the known ones."""
    for key in data:
        if key not in known:
            allowed = ", ".join(sorted(known))
            raise where.error(f"{prefix}{key}", f"unknown key (known: {allowed})")


def as_table(where: Where, key: str, value: Any) -> dict[str, Any]:
    """`value` if it is a TOML table; raises PlanError otherwise."""
    if not isinstance(value, dict):
        raise where.error(key, "must be a table")
    return value


def as_flag(where: Where, key: str, value: Any) -> bool:
    """`value` if it is true or false; raises PlanError otherwise."""
    if not isinstance(value, bool):
        raise where.error(key, "must be true or false")
    return value


def substitute(where: Where, key: str, text: str, scope: Scope) -> str | None:
    """`text` with its ${names} filled in, or None when it uses a variable an
    earlier step captures (known only at run time)."""
    waiting = False

    def value(match: re.Match[str]) -> str:
        nonlocal waiting
        name = match.group(1)
        if name in scope.captured_before:
            waiting = True
            return ""
        if name in scope.values:
            return scope.values[name]
        if name in scope.captured_later:
            raise where.error(
                key,
                f"variable ${{{name}}} is used before any step captures it "
                f"(step {scope.captured_later[name]} is the first to capture it)",
            )
        raise where.error(
            key,
            f"variable ${{{name}}} is not set (give it in [variables], "
            f"with --var {name}=VALUE, or capture it in an earlier step)",
        )

    text = _VARIABLE.sub(value, text)
    return None if waiting else text


def variables_used(data: Any) -> set[str]:
    """Every ${name} in the strings of a step's table, its captures left out."""
    if isinstance(data, str):
        return set(_VARIABLE.findall(data))
    if isinstance(data, dict):
        return set().union(
            *(variables_used(value) for key, value in data.items() if key != "capture")
        )
    if isinstance(data, list):
        return set().union(*(variables_used(value) for value in data))
    return set()


def as_pattern(where: Where, key: str, text: str) -> re.Pattern[str]:
    """`text` compiled as a regular expression; raises PlanError if it is none."""
    try:
        return re.compile(text)
    except re.error as error:
        raise where.error(key, f"not a regular expression: {error}") from error


def read_captures(
    where: Where, key: str, data: Any, command: str | None
) -> tuple[Capture, ...]:
    """The captures of a step's `[steps.capture]` table, checked against the
    layout of its reply's `command`.

    Raises:
        PlanError: a variable name, key, index or pattern is wrong, or the
            reply cannot carry the field (unless marked `extension`).
    """
    captures = []
    for variable, written in as_table(where, f"{key}.capture", data).items():
        here = f"{key}.capture.{variable}"
        if not _NAME.fullmatch(variable):
            raise where.error(here, "a variable name is letters, digits and _")
        spec = as_table(
            where, here, {"field": written} if isinstance(written, str) else written
        )
        check_keys(where, f"{here}.", spec, _CAPTURE_KEYS)
        field = spec.get("field")
        if not isinstance(field, str):
            raise where.error(here, "needs a field: a two-letter code or a fixed field")
        index = spec.get("index", 1)
        if isinstance(index, bool) or not isinstance(index, int) or index < 1:
            raise where.error(f"{here}.index", "must be a whole number from 1")
        pattern = None
        if "pattern" in spec:
            if not isinstance(spec["pattern"], str):
                raise where.error(f"{here}.pattern", "must be a string")
            pattern = as_pattern(where, f"{here}.pattern", spec["pattern"])
            if pattern.groups > 1:
                raise where.error(
                    f"{here}.pattern", "may hold at most one group (the value taken)"
                )
        extension = as_flag(where, f"{here}.extension", spec.get("extension", False))
        fixed = _capture_field(where, here, field, command, extension=extension)
        captures.append(
            Capture(
                variable=variable,
                field=field,
                fixed=fixed,
                index=index,
                pattern=pattern,
            )
        )
    return tuple(captures)


def _capture_field(
    where: Where, key: str, field: str, command: str | None, *, extension: bool
) -> bool:
    """Whether `field` is a fixed field of the reply; raises when the reply
    cannot have it."""
    if command is None:
        raise where.error(
            key, "the reply's command is not known: set expect.command to capture"
        )
    layout = layout_view(command)
    if extension:
        if not _CODE.fullmatch(field):
            raise where.error(f"{key}.field", "an extension field is a two-letter code")
        return False
    if layout is None:
        raise where.error(
            key,
            f"a {command} reply has no known fields: capture with extension = true",
        )
    if any(view.name == field for view in layout.fixed):
        return True
    if _CODE.fullmatch(field):
        if not any(view.code == field for view in layout.variable):
            codes = " ".join(view.code or "" for view in layout.variable)
            raise where.error(
                f"{key}.field",
                f"a {command} reply has no field {field} (its fields: {codes}; "
                "for another server's own field, add extension = true)",
            )
        return False
    raise where.error(
        f"{key}.field",
        f"a {command} reply has no fixed field {field!r} and it is no field code",
    )
