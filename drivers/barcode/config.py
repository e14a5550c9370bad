"""Reading a site's scanner settings from TOML (`config/scanners.toml`).

Layer: `drivers`. Imports the standard library and `drivers.barcode`.

The file holds a site-wide `[pipeline]` table and one `[[scanner]]` table per
scanner; a scanner with its own `pipeline` table uses that one instead of the
site's. Every error names the file, the key and the problem.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path

from drivers.barcode.hid import HidScannerSettings
from drivers.barcode.pipeline import BarcodePipeline, ScannerConfigError
from drivers.barcode.serial_scanner import SerialScanner

__all__ = [
    "ScannerSettings",
    "load_scanners",
    "parse_scanners",
    "read_scanners_file",
    "site_pipeline",
]

ScannerSettings = SerialScanner | HidScannerSettings
"""One configured scanner, serial or keyboard-wedge."""

_TOP_KEYS = ("pipeline", "scanner")


def parse_scanners(
    document: Mapping[str, object], *, source: str | None = None
) -> list[ScannerSettings]:
    """The scanners a parsed TOML document describes, in file order.

    Raises:
        ScannerConfigError: a key is missing, unknown or has a wrong value.
    """
    for name in document:
        if name not in _TOP_KEYS:
            raise ScannerConfigError(
                name, "unknown key; use [pipeline] and [[scanner]]", source=source
            )
    site = document.get("pipeline", {})
    if not isinstance(site, Mapping):
        raise ScannerConfigError("pipeline", "must be a table", source=source)
    # Checked once here, so a mistake is reported against [pipeline] itself.
    BarcodePipeline.from_config(site, key="pipeline", source=source)

    tables = document.get("scanner", [])
    if not isinstance(tables, list):
        raise ScannerConfigError(
            "scanner", "must be written [[scanner]]", source=source
        )
    scanners: list[ScannerSettings] = []
    names: set[str] = set()
    for index, table in enumerate(tables):
        key = f"scanner[{index}]"
        if not isinstance(table, Mapping):
            raise ScannerConfigError(key, "must be a table", source=source)
        merged = dict(table)
        merged.setdefault("pipeline", site)
        kind = table.get("kind")
        scanner: ScannerSettings
        if kind == "serial":
            scanner = SerialScanner.from_config(merged, key=key, source=source)
        elif kind == "hid":
            scanner = HidScannerSettings.from_config(merged, key=key, source=source)
        else:
            raise ScannerConfigError(
                f"{key}.kind", f'must be "serial" or "hid", not {kind!r}', source=source
            )
        if scanner.name in names:
            raise ScannerConfigError(
                f"{key}.name", f"{scanner.name!r} is used twice", source=source
            )
        names.add(scanner.name)
        scanners.append(scanner)
    return scanners


def read_scanners_file(path: str | Path) -> dict[str, object]:
    """The parsed TOML document of a scanners file.

    Raises:
        ScannerConfigError: the file is missing, a directory, unreadable, not
            UTF-8 or not valid TOML; the message names the file.
    """
    source = str(path)
    try:
        with open(path, "rb") as file:
            return tomllib.loads(file.read().decode("utf-8"))
    except FileNotFoundError:
        raise ScannerConfigError("(file)", "no such file", source=source) from None
    except IsADirectoryError:
        raise ScannerConfigError(
            "(file)", "is a directory, not a file", source=source
        ) from None
    except OSError as problem:
        raise ScannerConfigError(
            "(file)", f"cannot be read: {problem.strerror or problem}", source=source
        ) from None
    except UnicodeDecodeError as problem:
        raise ScannerConfigError(
            "(file)",
            f"not UTF-8 text (byte {problem.start}: {problem.reason})",
            source=source,
        ) from None
    except tomllib.TOMLDecodeError as problem:
        raise ScannerConfigError(
            "(file)", f"not valid TOML: {problem}", source=source
        ) from None


def site_pipeline(
    document: Mapping[str, object], *, source: str | None = None
) -> BarcodePipeline:
    """The site-wide `[pipeline]` of a parsed scanners file.

    Raises:
        ScannerConfigError: the table is not one, or a setting is wrong.
    """
    site = document.get("pipeline", {})
    if not isinstance(site, Mapping):
        raise ScannerConfigError("pipeline", "must be a table", source=source)
    return BarcodePipeline.from_config(site, key="pipeline", source=source)


def load_scanners(path: str | Path) -> list[ScannerSettings]:
    """Read and check a scanners file.

    Raises:
        ScannerConfigError: the file cannot be read, is not UTF-8 TOML, or a
            setting is wrong.
    """
    return parse_scanners(read_scanners_file(path), source=str(path))
