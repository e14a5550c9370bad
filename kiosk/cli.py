"""`ils kiosk`: run the self-check kiosk, full screen, on one event loop.

Layer: `kiosk`, the command line (click; never `ils`). Kivy's settings and
Twisted's asyncio reactor are set up here, before anything imports Kivy's
window or Twisted's reactor.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("config/kiosk.toml"),
    show_default=True,
    help="The kiosk's configuration file.",
)
@click.option("--windowed", is_flag=True, help="Run in a window, not full screen.")
@click.option(
    "--hash-staff-code",
    is_flag=True,
    help="Ask for a staff code and print the hash to put in the configuration.",
)
def kiosk(config_path: Path, windowed: bool, hash_staff_code: bool) -> None:
    """Run the self-check kiosk: a touchscreen app that talks SIP2 to the server.

    \b
    Examples:
      ils kiosk --config config/kiosk.toml
      ils kiosk --config config/kiosk.toml --windowed
      ils kiosk --hash-staff-code
    """
    from kiosk.config import KioskConfigError, load_config
    from kiosk.config import hash_staff_code as make_hash

    if hash_staff_code:
        code = click.prompt("Staff code", hide_input=True, confirmation_prompt=True)
        click.echo(make_hash(code))
        return

    try:
        config = load_config(config_path)
    except KioskConfigError as error:
        raise click.ClickException(str(error)) from None

    # Kivy reads these when first imported.
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    from kivy.config import Config

    fullscreen = config.kiosk.fullscreen and not windowed
    Config.set("graphics", "fullscreen", "auto" if fullscreen else "0")
    Config.set("graphics", "borderless", "1" if fullscreen else "0")
    Config.set("graphics", "show_cursor", "0" if fullscreen else "1")
    Config.set("graphics", "width", str(config.display.width))
    Config.set("graphics", "height", str(config.display.height))
    # Escape never quits: a patron's keyboard (or a scanner sending it) must
    # not end the kiosk; a window is closed from its title bar.
    Config.set("kivy", "exit_on_escape", "0")

    # One loop for Twisted and Kivy (DESIGN.md, Runtime).
    from twisted.logger import globalLogBeginner, textFileLogObserver

    observer: Any = textFileLogObserver(sys.stderr)
    globalLogBeginner.beginLoggingTo([observer])

    from kiosk.loop import shared_loop

    with shared_loop() as (loop, reactor):
        from kiosk.journal import JournalError
        from kiosk.runtime import run

        try:
            # Kivy's async_run needs an asyncio task, not a Deferred.
            loop.run_until_complete(run(config, reactor))
        except JournalError as error:
            raise click.ClickException(str(error)) from None
