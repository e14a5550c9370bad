"""A site's barcode normalisation: what a scan becomes before the kiosk sees it.

Layer: `drivers`. Imports only the standard library and `drivers.events`.
Sans-I/O: a string in, an accepted or refused scan out.

The steps, in order (each can be switched off or configured per site):

1. an AIM symbology identifier (`]F0`, `]A0`...) is removed and reported;
2. Codabar start/stop characters (A-D) are removed (see `strip_codabar`);
3. whitespace and control characters are trimmed from both ends;
4. the site's transforms run in the order given;
5. the barcode is classified as "patron" or "item" by the site's patterns
   (patron first), otherwise "unknown";
6. optionally, every barcode of exactly 14 digits must pass the Luhn (mod 10)
   check that 14-digit Codabar library barcodes carry.

A scan longer than `MAX_SCAN_LENGTH` characters after trimming is refused
before any site pattern sees it, and a pattern with nested unbounded
repetition such as `(\\d+)+` is refused when the file is read: both keep a
regular expression from taking minutes over one odd scan.

Configuration is data, such as a TOML table:

    [pipeline]
    trim = true
    luhn = true
    patron_pattern = "^2[0-9]{13}$"
    item_pattern = "^3[0-9]{13}$"
    transforms = [
        { strip_prefix = "10" },
        { case = "upper" },
        { replace = "-", with = "" },
    ]
"""

from __future__ import annotations

import re
import re._parser as regex_parser  # type: ignore[import-not-found]  # no stubs
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drivers.barcode.symbology import split_aim, strip_codabar
from drivers.events import BarcodeRejected, BarcodeScanned

__all__ = [
    "AcceptedScan",
    "BarcodePipeline",
    "RefusedScan",
    "ScannerConfigError",
    "Transform",
    "luhn_valid",
]

MAX_SCAN_LENGTH = 64
"""Longest scan, after trimming, that transforms and patterns are run on."""

_CONTROL_AND_SPACE = "".join(chr(c) for c in range(33)) + "\x7f"
_PIPELINE_KEYS = (
    "aim",
    "codabar",
    "trim",
    "transforms",
    "patron_pattern",
    "item_pattern",
    "luhn",
)


class ScannerConfigError(ValueError):
    """A scanner setting is wrong; the message names the key and the problem."""

    def __init__(self, key: str, problem: str, *, source: str | None = None) -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}")
        self.key = key
        self.problem = problem
        self.source = source


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn (mod 10) check.

    The last digit is the check digit. Counting from it (position 1), every
    digit in an even position is doubled and 9 is taken from any double above
    9; the sum of all digits must be a multiple of 10. For 14-digit library
    barcodes this is the "mod 10, type 1" check digit.
    """
    if not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits), start=1):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class Transform:
    """One named step of a site's transforms; `describe` is for messages."""

    describe: str
    apply: Callable[[str], str]

    @staticmethod
    def strip_prefix(prefix: str) -> Transform:
        """Remove `prefix` when the barcode starts with it."""
        return Transform(
            f"strip_prefix {prefix!r}",
            lambda code: code[len(prefix) :] if code.startswith(prefix) else code,
        )

    @staticmethod
    def strip_suffix(suffix: str) -> Transform:
        """Remove `suffix` when the barcode ends with it."""
        return Transform(
            f"strip_suffix {suffix!r}",
            lambda code: code[: -len(suffix)] if code.endswith(suffix) else code,
        )

    @staticmethod
    def upper() -> Transform:
        """Upper-case the barcode."""
        return Transform("case upper", str.upper)

    @staticmethod
    def lower() -> Transform:
        """Lower-case the barcode."""
        return Transform("case lower", str.lower)

    @staticmethod
    def replace(pattern: re.Pattern[str], replacement: str) -> Transform:
        """Replace every match of `pattern` (`re.sub` syntax for `replacement`)."""
        return Transform(
            f"replace {pattern.pattern!r}",
            lambda code: pattern.sub(replacement, code),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedScan:
    """A scan the pipeline accepted: the barcode to use and what kind it is."""

    barcode: str
    kind: str
    raw: str
    symbology: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RefusedScan:
    """A scan the pipeline refused; `reason` says why, for operators."""

    raw: str
    reason: str
    symbology: str | None


class BarcodePipeline:
    """A site's normalisation steps, built from data and applied to each scan."""

    def __init__(
        self,
        *,
        aim: bool = True,
        codabar: bool = True,
        trim: bool = True,
        transforms: Sequence[Transform] = (),
        patron_pattern: re.Pattern[str] | None = None,
        item_pattern: re.Pattern[str] | None = None,
        luhn: bool = False,
    ) -> None:
        self.aim = aim
        self.codabar = codabar
        self.trim = trim
        self.transforms = tuple(transforms)
        self.patron_pattern = patron_pattern
        self.item_pattern = item_pattern
        self.luhn = luhn

    @classmethod
    def from_config(
        cls,
        table: Mapping[str, object],
        *,
        key: str = "pipeline",
        source: str | None = None,
    ) -> BarcodePipeline:
        """Build a pipeline from a table such as `[pipeline]` of scanners.toml.

        `key` and `source` (the file) only go into error messages.

        Raises:
            ScannerConfigError: a key is unknown or has a wrong value.
        """

        def error(name: str, problem: str) -> ScannerConfigError:
            return ScannerConfigError(f"{key}.{name}", problem, source=source)

        for name in table:
            if name not in _PIPELINE_KEYS:
                raise error(
                    name, f"unknown key; known keys: {', '.join(_PIPELINE_KEYS)}"
                )

        def flag(name: str, default: bool) -> bool:
            value = table.get(name, default)
            if not isinstance(value, bool):
                raise error(name, f"must be true or false, not {value!r}")
            return value

        def pattern(name: str) -> re.Pattern[str] | None:
            value = table.get(name)
            if value is None:
                return None
            if not isinstance(value, str):
                raise error(name, f"must be a regular expression string, not {value!r}")
            try:
                compiled = re.compile(value)
            except re.error as problem:
                raise error(
                    name, f"not a valid regular expression: {problem}"
                ) from None
            _refuse_nested_repetition(compiled, lambda problem: error(name, problem))
            return compiled

        raw_transforms = table.get("transforms", [])
        if not isinstance(raw_transforms, list):
            raise error("transforms", "must be an array of tables")
        transforms = [
            _transform_from_config(entry, f"{key}.transforms[{index}]", source)
            for index, entry in enumerate(raw_transforms)
        ]

        return cls(
            aim=flag("aim", True),
            codabar=flag("codabar", True),
            trim=flag("trim", True),
            transforms=transforms,
            patron_pattern=pattern("patron_pattern"),
            item_pattern=pattern("item_pattern"),
            luhn=flag("luhn", False),
        )

    def process(self, raw: str) -> AcceptedScan | RefusedScan:
        """Run every step on one scan, as the scanner sent it (framing removed)."""
        code = raw
        symbology = None
        if self.trim:
            code = code.strip(_CONTROL_AND_SPACE)
        if self.aim:
            symbology, code = split_aim(code)
        if self.codabar:
            code = strip_codabar(code, symbology)
        if self.trim:
            code = code.strip(_CONTROL_AND_SPACE)
        if len(code) > MAX_SCAN_LENGTH:
            return RefusedScan(
                raw=raw,
                reason=f"longer than {MAX_SCAN_LENGTH} characters; no library "
                "barcode is",
                symbology=symbology,
            )

        for transform in self.transforms:
            code = transform.apply(code)

        if not code:
            return RefusedScan(
                raw=raw, reason="nothing left of the scan", symbology=symbology
            )
        fourteen_digits = len(code) == 14 and code.isascii() and code.isdigit()
        if self.luhn and fourteen_digits and not luhn_valid(code):
            return RefusedScan(
                raw=raw,
                reason="the check digit of a 14-digit barcode is wrong (Luhn)",
                symbology=symbology,
            )
        return AcceptedScan(
            barcode=code, kind=self.classify(code), raw=raw, symbology=symbology
        )

    def classify(self, code: str) -> str:
        """Classify by the site's patterns: "patron" (tried first), "item" or else
        "unknown".
        """
        if self.patron_pattern is not None and self.patron_pattern.search(code):
            return "patron"
        if self.item_pattern is not None and self.item_pattern.search(code):
            return "item"
        return "unknown"

    def event(
        self, raw: str, *, device: str, at: datetime
    ) -> BarcodeScanned | BarcodeRejected:
        """The domain event for one scan: `BarcodeScanned` or `BarcodeRejected`."""
        result = self.process(raw)
        if isinstance(result, RefusedScan):
            return BarcodeRejected(device=device, raw=raw, reason=result.reason, at=at)
        return BarcodeScanned(
            device=device,
            barcode=result.barcode,
            kind=result.kind,
            raw=raw,
            at=at,
            symbology=result.symbology,
        )


_TRANSFORM_ACTIONS = ("strip_prefix", "strip_suffix", "case", "replace")


def _transform_from_config(entry: object, key: str, source: str | None) -> Transform:
    """One entry of `transforms`: a table with exactly one action."""

    def error(name: str, problem: str) -> ScannerConfigError:
        return ScannerConfigError(name, problem, source=source)

    if not isinstance(entry, Mapping):
        raise error(key, 'must be a table such as { case = "upper" }')
    for name in entry:
        if name not in (*_TRANSFORM_ACTIONS, "with"):
            raise error(
                f"{key}.{name}", f"unknown key; use one of {_TRANSFORM_ACTIONS}"
            )
    actions = [name for name in _TRANSFORM_ACTIONS if name in entry]
    if len(actions) != 1:
        raise error(key, f"give exactly one of {_TRANSFORM_ACTIONS}")
    action = actions[0]
    value = entry[action]
    if not isinstance(value, str):
        raise error(f"{key}.{action}", f"must be a string, not {value!r}")
    if "with" in entry and action != "replace":
        raise error(f"{key}.with", "only goes with replace")

    if action == "replace":
        return _replace_from_config(value, entry.get("with", ""), key, error)
    if not value:
        raise error(f"{key}.{action}", "must not be empty")
    simple: dict[tuple[str, str], Callable[[str], Transform]] = {
        ("strip_prefix", value): Transform.strip_prefix,
        ("strip_suffix", value): Transform.strip_suffix,
        ("case", "upper"): lambda _: Transform.upper(),
        ("case", "lower"): lambda _: Transform.lower(),
    }
    make = simple.get((action, value))
    if make is None:
        raise error(f"{key}.case", f'must be "upper" or "lower", not {value!r}')
    return make(value)


def _replace_from_config(
    pattern: str,
    replacement: object,
    key: str,
    error: Callable[[str, str], ScannerConfigError],
) -> Transform:
    if not isinstance(replacement, str):
        raise error(f"{key}.with", f"must be a string, not {replacement!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as problem:
        raise error(
            f"{key}.replace", f"not a valid regular expression: {problem}"
        ) from None
    _refuse_nested_repetition(
        compiled, lambda problem: error(f"{key}.replace", problem)
    )
    try:
        # Compiles the replacement template, so a bad group reference shows now.
        compiled.sub(replacement, "")
    except (re.error, IndexError) as problem:
        raise error(f"{key}.with", f"bad replacement: {problem}") from None
    return Transform.replace(compiled, replacement)


_REPEATS = (regex_parser.MAX_REPEAT, regex_parser.MIN_REPEAT)


# TODO(#7): overlapping alternatives under a repeat, such as (a|ab)+, also
# backtrack badly and are not detected; only the 64-character limit bounds them.
def _nested_unbounded(items: Any, inside_repeat: bool) -> bool:
    # Walks the parsed pattern: an unbounded repeat inside another repeat (the
    # `(\d+)+` shape) can backtrack exponentially on a scan that fails to match.
    for op, argument in items:
        parts: list[tuple[Any, bool]] = []
        if op in _REPEATS:
            _low, high, body = argument
            if inside_repeat and high == regex_parser.MAXREPEAT:
                return True
            parts = [(body, inside_repeat or high > 1)]
        elif op == regex_parser.SUBPATTERN:
            parts = [(argument[-1], inside_repeat)]
        elif op == regex_parser.BRANCH:
            parts = [(branch, inside_repeat) for branch in argument[1]]
        elif op in (regex_parser.ASSERT, regex_parser.ASSERT_NOT):
            parts = [(argument[1], inside_repeat)]
        if any(_nested_unbounded(part, inside) for part, inside in parts):
            return True
    return False


def _refuse_nested_repetition(
    pattern: re.Pattern[str], error: Callable[[str], ScannerConfigError]
) -> None:
    if _nested_unbounded(regex_parser.parse(pattern.pattern), False):
        raise error(
            f"{pattern.pattern!r} repeats a repetition (like (\\d+)+), which can "
            "take minutes on one bad scan; write it without the outer repeat"
        )
