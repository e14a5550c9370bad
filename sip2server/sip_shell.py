"""`ils sip shell`: `ils sip` subcommands read one per line from a script or a
terminal, on one connection that is opened again when the server closes it.

Layer: `sip2server`, beside the SIP2 client. Imports click, `sip_terminal` and the
standard library; never `ils` (it talks to servers only over the wire). Lines may
carry passwords and PINs, so they are never written to a history file or a log.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

import click

from sip2server.sip_terminal import LoginRefused, Terminal

__all__ = ["shell"]

# Subcommands a shell line may not name: they read standard input or run a whole
# session of their own.
_NOT_IN_SHELL = frozenset({"shell", "conform"})


@click.command()
@click.pass_context
def shell(ctx: click.Context) -> None:
    """Read commands, one per line, from standard input (a script or a terminal).

    Each line is a subcommand with its arguments, e.g. `checkout 2123... 3123...`.
    Blank lines and lines starting with # are skipped; `quit` ends. At a
    terminal the line can be edited and earlier lines recalled (up arrow); that
    history is kept in memory only and dropped when the shell ends.

    When the server closes the connection (a restart, or a reload that changed
    the account), the next command connects and logs in again, and says so; a
    refused login ends the shell. From a script, the exit status is 1 when any
    line failed (an unknown command, a connection error), 0 otherwise.
    """
    terminal: Terminal = ctx.obj
    terminal.in_shell = True
    interactive = sys.stdin.isatty()
    read_line = _line_reader(sys.stdin)
    failed = False
    try:
        while True:
            line = read_line()
            if not line or line.strip() in {"quit", "exit"}:
                break
            try:
                failed = not _run_shell_line(ctx, line) or failed
            except LoginRefused as error:
                error.show()
                click.echo("the shell stops: every command would need that login")
                ctx.exit(1)
    finally:
        if interactive:
            _forget_history()
    if failed and not interactive:
        ctx.exit(1)


def _run_shell_line(ctx: click.Context, line: str) -> bool:
    """Run one line of `ils sip shell` as the subcommand it names; False when it
    failed (shown already).

    Raises:
        LoginRefused: the server refused the terminal's login.
    """
    try:
        words = shlex.split(line, comments=True)
    except ValueError as error:
        click.echo(f"Error: cannot read the line: {error}", err=True)
        return False
    if not words:
        return True
    group = ctx.parent.command if ctx.parent is not None else None
    assert isinstance(group, click.Group)
    command = group.get_command(ctx, words[0])
    if command is None or words[0] in _NOT_IN_SHELL:
        known = ", ".join(name for name in group.commands if name not in _NOT_IN_SHELL)
        click.echo(f"unknown command {words[0]!r}; try: {known}")
        return False
    try:
        with command.make_context(words[0], words[1:], parent=ctx) as sub:
            command.invoke(sub)
    except LoginRefused:
        raise
    except click.ClickException as error:
        error.show()
        return False
    except click.exceptions.Exit as done:
        return done.exit_code == 0
    return True


_PROMPT = "sip> "


def _line_reader(stream: Any) -> Callable[[], str]:
    """How `ils sip shell` reads its next line ("" at the end of input).

    From a pipe or a file, plain lines and no prompt. At a terminal, a prompt,
    and with the standard library's readline (where Python has it) line editing
    and a history of this shell's lines, kept in memory only: lines may carry
    passwords and PINs (CO, AD, --pin), so no history file is read or written.
    """
    if not stream.isatty():
        return stream.readline  # type: ignore[no-any-return]
    try:
        import readline  # noqa: PLC0415, F401  (input() edits lines once loaded)
    except ImportError:

        def prompted() -> str:
            click.echo(_PROMPT, nl=False)
            return stream.readline()  # type: ignore[no-any-return]

        return prompted

    def edited() -> str:
        while True:
            try:
                return input(_PROMPT) + "\n"
            except EOFError:
                return ""
            except KeyboardInterrupt:
                # Ctrl-C drops the line being typed, as in a shell.
                click.echo("")

    return edited


def _forget_history() -> None:
    """Drop the shell's lines from readline's memory when the shell ends."""
    readline = sys.modules.get("readline")
    if readline is not None:
        readline.clear_history()
