"""`ils scanner`: check a scanners file, and see what a scan becomes.

Layer: `drivers`. Registered with the `ils` command through the `ils.commands`
entry points in `pyproject.toml`; imports click and `drivers.barcode`, never
`ils`. Opens no device: it reads the file and runs the pipeline on text.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from drivers.barcode.config import (
    ScannerSettings,
    parse_scanners,
    read_scanners_file,
    site_pipeline,
)
from drivers.barcode.hid import HidScannerSettings
from drivers.barcode.pipeline import (
    BarcodePipeline,
    RefusedScan,
    ScannerConfigError,
)

_CONFIG = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path("config/scanners.toml"),
    show_default=True,
    help="The scanners file (TOML).",
)


def _load(config_path: Path) -> tuple[BarcodePipeline, list[ScannerSettings]]:
    source = str(config_path)
    try:
        document = read_scanners_file(config_path)
        return site_pipeline(document, source=source), parse_scanners(
            document, source=source
        )
    except ScannerConfigError as error:
        raise click.ClickException(str(error)) from None


def _where(scanner: ScannerSettings) -> str:
    if isinstance(scanner, HidScannerSettings):
        found_by = [
            f"{label} {value!r}"
            for label, value in (
                ("path", scanner.path),
                ("device name", scanner.device_name),
                ("phys", scanner.phys),
            )
            if value
        ]
        return "keyboard wedge, " + ", ".join(found_by)
    return f"serial, {scanner.url}"


@click.group()
def scanner() -> None:
    """Barcode scanners: check their settings and try the site's pipeline."""


@scanner.command()
@_CONFIG
def check(config_path: Path) -> None:
    """Check a scanners file and list the scanners it sets up."""
    _, scanners = _load(config_path)
    click.echo(f"{config_path}: ok, {len(scanners)} scanner(s)")
    for index, each in enumerate(scanners):
        click.echo(f"  scanner[{index}] {each.name!r}: {_where(each)}")


@scanner.command(name="try")
@_CONFIG
@click.option(
    "--scanner",
    "scanner_name",
    help="Use this scanner's own pipeline instead of the site's [pipeline].",
)
@click.argument("texts", nargs=-1)
def try_(config_path: Path, scanner_name: str | None, texts: tuple[str, ...]) -> None:
    """Show what each TEXT (or each line of standard input) becomes: the
    barcode and its kind (patron, item or unknown), or why it is refused."""
    pipeline, scanners = _load(config_path)
    if scanner_name is not None:
        named = [each for each in scanners if each.name == scanner_name]
        if not named:
            known = ", ".join(repr(each.name) for each in scanners) or "none"
            raise click.ClickException(
                f"{config_path}: no scanner named {scanner_name!r} (known: {known})"
            )
        pipeline = named[0].pipeline
    lines = texts or tuple(line.rstrip("\n") for line in sys.stdin)
    refused = 0
    for raw in lines:
        result = pipeline.process(raw)
        if isinstance(result, RefusedScan):
            refused += 1
            click.echo(f"{raw!r} -> refused: {result.reason}")
        else:
            symbology = f", symbology {result.symbology}" if result.symbology else ""
            click.echo(f"{raw!r} -> {result.barcode!r} ({result.kind}{symbology})")
    if refused:
        sys.exit(1)


if __name__ == "__main__":
    scanner()
