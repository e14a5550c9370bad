"""`ils gate`: run an RFID security gate in the foreground.

Layer: `drivers`. Registered with the `ils` command through the `ils.commands`
entry points in `pyproject.toml`; never imports `ils`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from drivers.gate.config import GateConfig, GateConfigError, load_gate_config


def _install_asyncio_reactor() -> Any:
    # One event loop for everything: Twisted runs on asyncio (DESIGN.md, Runtime).
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # zope.interface hides Twisted's types from mypy here; these are plain calls.
    install: Any = asyncioreactor.install
    install(loop)
    from twisted.internet import reactor

    return reactor


def _start_logging(level: str) -> None:
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    predicate: Any = LogLevelFilterPredicate(
        defaultLogLevel=LogLevel.levelWithName(level)
    )
    text: Any = textFileLogObserver(sys.stderr)
    observer: Any = FilteringLogObserver(text, [predicate])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _check_devices(config_path: Path, config: GateConfig) -> None:
    from drivers.gate.checks import check_devices

    problems = check_devices(config)
    if not problems:
        click.echo(f"{config_path}: syntax and keys ok; every device can be opened")
        return
    lines = "\n".join(f"{config_path}: {problem.line()}" for problem in problems)
    raise click.ClickException(f"devices not usable now:\n{lines}")


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("config/gate.toml"),
    show_default=True,
    help="The gate's TOML configuration file.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Check the configuration file's syntax and keys only, and exit.",
)
@click.option(
    "--check-devices",
    is_flag=True,
    help=(
        "Check the file, then open the reader port, the alarm relay port or "
        "command, and the people counter port as starting would, and exit."
    ),
)
def gate(config_path: Path, check: bool, check_devices: bool) -> None:
    """Run an RFID security gate until Ctrl-C or SIGTERM.

    The gate polls its reader, sounds the alarm for items whose tag is still
    secured, then (if [sip] is configured) logs the item's title and whether
    the library system has it on loan. It counts tag passes and alarms and
    logs the counts every report_interval and when it stops.
    """
    try:
        config = load_gate_config(config_path)
    except GateConfigError as error:
        raise click.ClickException(f"configuration not usable:\n{error}") from None
    if check and not check_devices:
        click.echo(
            f"{config_path}: syntax and keys ok; devices not checked "
            "(--check-devices opens them)"
        )
        return
    if check_devices:
        _check_devices(config_path, config)
        return

    reactor = _install_asyncio_reactor()
    _start_logging(config.gate.log_level)
    from drivers.gate.app import GateStartupError, start_gate

    try:
        running = start_gate(config, reactor)
    except GateStartupError as error:
        raise click.ClickException(f"{config_path}: {error}") from None
    reactor.addSystemEventTrigger("before", "shutdown", running.stop)
    click.echo(
        f"Gate {config.gate.name!r} running: reader {config.reader.driver.value} on "
        f"{config.reader.port}, alarm output {config.alarm.output.value} "
        "(Ctrl-C stops it)"
    )
    # Under systemd or a pipe stdout is block-buffered; the start line must show now.
    sys.stdout.flush()
    reactor.run()
    click.echo("Gate stopped.")
