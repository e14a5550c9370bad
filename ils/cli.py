"""The `ils` command line: one entry point for the core and everything above it.

Layer: `ils`. The core's own commands are named here by module path; commands of
the layers above (`serve`, `sip`, later `kiosk` and `gate`) register themselves
under the `ils.commands` entry-point group in `pyproject.toml`. Either way a
command's module is imported only when that command runs, so `ils` never imports
the server, the kiosk or the drivers, and `ils --help` stays quick.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import click
from sqlalchemy.exc import DBAPIError

# name -> "module:attribute" of a click command, imported on first use.
CORE_COMMANDS: dict[str, str] = {
    "init": "ils.schema:init_command",
    "import": "ils.importing.commands:import_group",
    "demo": "ils.demo:demo_command",
    "rules": "ils.rules.commands:rules_group",
    "export": "ils.exporting:export_command",
    "privacy": "ils.privacy_commands:privacy_group",
    "holds": "ils.holds_commands:holds_group",
    "library": "ils.library_commands:library_group",
    "fees": "ils.staff_commands:fees_group",
    "patrons": "ils.staff_commands:patrons_group",
    "items": "ils.staff_commands:items_group",
}

ENTRY_POINT_GROUP = "ils.commands"


def _load(target: str) -> click.Command:
    module_name, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


class LazyCommands(click.Group):
    """A click group whose subcommands are imported only when they are used."""

    def _targets(self) -> dict[str, str]:
        targets = dict(CORE_COMMANDS)
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            targets.setdefault(entry.name, entry.value)
        return targets

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._targets()))

    def invoke(self, ctx: click.Context) -> object:
        # A database that cannot be reached is the operator's everyday problem:
        # one line that says so, not a driver's traceback.
        try:
            return super().invoke(ctx)
        except DBAPIError as error:
            raise click.ClickException(
                f"cannot use the database: {str(error.orig).strip()}"
            ) from None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        target = self._targets().get(cmd_name)
        if target is None:
            return None
        try:
            return _load(target)
        except ImportError as error:
            # A part that is registered but not installed (or broken) must not
            # take `ils --help` and every other command down with it.
            return _unavailable(cmd_name, target, error)


def _unavailable(name: str, target: str, error: ImportError) -> click.Command:
    reason = f"cannot load {target}: {error}"

    def explain() -> None:
        raise click.ClickException(
            f"the `{name}` command is not available: {reason}."
            " Reinstall the package (make venv) or see the README."
        )

    return click.Command(
        name,
        callback=explain,
        help=f"(not available: {reason})",
        short_help="(not available here)",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


@click.group(cls=LazyCommands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ils-selfservice")
def main() -> None:
    """Run a library's self-service side: database, imports, SIP2 server.

    Start with `ils demo --db sqlite:///var/demo.sqlite3` to build a demo library,
    then `ils serve --config config/sip2server.toml` to serve it over SIP2.
    Every command takes --help.
    """


if __name__ == "__main__":
    main()
