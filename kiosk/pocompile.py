"""Compile gettext `.po` catalogues into `.mo` files, with the standard library only.

Layer: `kiosk` build tool (no Kivy, never `ils`). The image has no Babel, and a
kiosk should not need GNU gettext installed to be built, so this reads the
subset of the PO format the kiosk's catalogues use (msgctxt-free entries,
`msgid`/`msgstr`, multi-line strings, `#` comments, the usual escapes) and
writes the GNU `.mo` layout that `gettext.GNUTranslations` reads: a header,
two tables of (length, offset) sorted by msgid, then the strings.

    python -m kiosk.pocompile          # every kiosk/locale/*/LC_MESSAGES/*.po
    python -m kiosk.pocompile --check  # fail if a committed .mo is stale
"""

from __future__ import annotations

import argparse
import ast
import struct
import sys
from pathlib import Path

from .i18n import LOCALE_DIR

_MAGIC = 0x950412DE


class PoError(ValueError):
    """A `.po` file this compiler cannot read, naming the file and line."""


def read_po(path: Path) -> dict[str, str]:
    """The translations of a `.po` file (fuzzy and empty ones left out).

    Raises:
        PoError: naming the file and line of what could not be read.
    """
    messages: dict[str, str] = {}
    msgid: list[str] | None = None
    msgstr: list[str] | None = None
    current: list[str] | None = None
    fuzzy = next_fuzzy = False

    def flush() -> None:
        nonlocal msgid, msgstr, current
        if msgid is not None and msgstr is not None:
            key, value = "".join(msgid), "".join(msgstr)
            if value and not fuzzy:
                messages[key] = value
        msgid = msgstr = current = None

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            # Comments belong to the entry that follows them.
            flush()
            if line.startswith("#,") and "fuzzy" in line:
                next_fuzzy = True
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "msgid":
            flush()
            fuzzy, next_fuzzy = next_fuzzy, False
            msgid = [_string(rest, path, number)]
            current = msgid
        elif keyword == "msgstr":
            if msgid is None or msgstr is not None:
                raise PoError(f"{path}:{number}: msgstr without its msgid")
            msgstr = [_string(rest, path, number)]
            current = msgstr
        elif line.startswith('"'):
            if current is None:
                raise PoError(f"{path}:{number}: a string outside an entry")
            current.append(_string(line, path, number))
        else:
            raise PoError(f"{path}:{number}: cannot read {line[:40]!r}")
    flush()
    return messages


def _string(text: str, path: Path, number: int) -> str:
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise PoError(f"{path}:{number}: expected a quoted string")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise PoError(f"{path}:{number}: bad string: {error}") from None
    if not isinstance(value, str):  # pragma: no cover - a quoted literal is str
        raise PoError(f"{path}:{number}: expected a string")
    return value


def mo_bytes(messages: dict[str, str]) -> bytes:
    """The GNU `.mo` file for these translations (the header entry included)."""
    keys = sorted(messages)
    ids = [key.encode("utf-8") for key in keys]
    strs = [messages[key].encode("utf-8") for key in keys]
    count = len(keys)
    header_size = 7 * 4
    ids_table = header_size
    strs_table = ids_table + count * 8
    data_start = strs_table + count * 8

    offsets_ids = []
    blob = b""
    for encoded in ids:
        offsets_ids.append((len(encoded), data_start + len(blob)))
        blob += encoded + b"\0"
    offsets_strs = []
    for encoded in strs:
        offsets_strs.append((len(encoded), data_start + len(blob)))
        blob += encoded + b"\0"

    out = struct.pack("<7I", _MAGIC, 0, count, ids_table, strs_table, 0, 0)
    for length, offset in offsets_ids + offsets_strs:
        out += struct.pack("<2I", length, offset)
    return out + blob


def catalogues(root: Path = LOCALE_DIR) -> list[Path]:
    """Every `.po` file under the locale folder."""
    return sorted(root.glob("*/LC_MESSAGES/*.po"))


def main(argv: list[str] | None = None) -> int:
    """Compile (or, with --check, verify) every catalogue; returns an exit code."""
    parser = argparse.ArgumentParser(prog="python -m kiosk.pocompile")
    parser.add_argument("--check", action="store_true", help="verify, write nothing")
    options = parser.parse_args(argv)
    stale = []
    for po in catalogues():
        compiled = mo_bytes(read_po(po))
        mo = po.with_suffix(".mo")
        if options.check:
            if not mo.exists() or mo.read_bytes() != compiled:
                stale.append(str(mo))
        else:
            mo.write_bytes(compiled)
    if stale:
        sys.stderr.write("stale: " + ", ".join(stale) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
