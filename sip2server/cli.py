"""`ils serve` and `ils sip`: the SIP2 server's commands.

Layer: `sip2server`. Registered with the `ils` command through the
`ils.commands` entry points in `pyproject.toml`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import click

from sip2server.config import (
    ConfigError,
    ServerConfig,
    load_config,
    missing_tls_files,
    socket_activation_warnings,
    transaction_log_problem,
)


def _read(config_path: Path, database_url: str | None) -> ServerConfig:
    # --db on the command line wins over [database] url in the file.
    config = load_config(config_path)
    if not database_url:
        return config
    database = config.database.model_copy(update={"url": database_url})
    return config.model_copy(update={"database": database})


def _load(config_path: Path, database_url: str | None) -> ServerConfig:
    try:
        return _read(config_path, database_url)
    except ConfigError as error:
        raise click.ClickException(f"configuration not usable:\n{error}") from None


def _install_asyncio_reactor() -> Any:
    # One event loop for everything: Twisted runs on asyncio (DESIGN.md, Runtime).
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(loop)
    from twisted.internet import reactor

    return reactor


def _print_banner(config: ServerConfig, running: Any) -> None:
    from ils.db import display_url

    click.echo(f"Database: {display_url(config.database.url)}")
    click.echo("SIP accounts:")
    for account in config.accounts:
        # The banner may end up in a journal: name where the secret is, never it.
        secret = (
            "plain-text password in the config (for demos only)"
            if account.password is not None
            else "hashed password"
        )
        click.echo(
            f"  login {account.login!r}, institution {account.institution!r}, "
            f"location {account.location!r}, {secret}"
        )
    for listener, (host, port) in zip(
        running.listeners, running.addresses(), strict=True
    ):
        shown = f"[{host}]" if ":" in host else host
        extras = []
        if listener.tls is not None:
            extras.append("TLS")
        if listener.proxied:
            extras.append("PROXY protocol")
        if listener.config.accounts is not None:
            extras.append(f"accounts {', '.join(listener.config.accounts)}")
        more = f" ({'; '.join(extras)})" if extras else ""
        click.echo(f"SIP2 server listening on {shown}:{port}{more} (Ctrl-C stops it)")
    operations = running.operations_address()
    if operations is not None:
        host, port = operations
        click.echo(f"Metrics on http://{host}:{port}/metrics, health on /healthz")
    if running.transactions is not None:
        click.echo(f"Transaction log: {running.transactions.path}")
    # Under systemd or a pipe stdout is block-buffered; the start line must show now.
    sys.stdout.flush()


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("config/sip2server.toml"),
    show_default=True,
    help="The server's TOML configuration file.",
)
@click.option("--db", "database_url", help="Database URL; overrides [database] url.")
@click.option(
    "--listen",
    multiple=True,
    help="A Twisted endpoint such as tcp:6001:interface=127.0.0.1; overrides "
    "[server] listen. May be given more than once.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or as one JSON object per line (for log shippers).",
)
def serve(
    config_path: Path,
    database_url: str | None,
    listen: tuple[str, ...],
    log_format: str,
) -> None:
    """Run the SIP2 server in the foreground until Ctrl-C or SIGTERM.

    SIGHUP reloads the accounts and their policies from the same file (and
    reopens the transaction log); connected terminals stay connected.
    """
    config = _load(config_path, database_url)

    reactor = _install_asyncio_reactor()
    from sip2server.logs import start_logging

    start_logging(sys.stderr, level=config.server.log_level, form=log_format)
    from sip2server.app import StartupError, start_server
    from sip2server.reload import reload_server

    outcome: dict[str, Any] = {}

    def reload(running: Any) -> None:
        reload_server(
            running,
            reactor,
            lambda: _read(config_path, database_url),
            source=config_path,
        )

    def started(running: Any) -> None:
        outcome["server"] = running
        _print_banner(config, running)
        reactor.addSystemEventTrigger("before", "shutdown", running.stop)
        # The handler only schedules: the reload runs on the reactor's turn.
        signal.signal(
            signal.SIGHUP,
            lambda *_: reactor.callFromThread(reload, running),
        )

    def failed(failure: Any) -> None:
        outcome["error"] = failure.value
        reactor.stop()

    def begin() -> None:
        deferred = start_server(config, reactor, listen=list(listen) or None)
        deferred.addCallbacks(started, failed)

    reactor.callWhenRunning(begin)
    reactor.run()

    problem = outcome.get("error")
    if isinstance(problem, StartupError):
        raise click.ClickException(str(problem))
    if problem is not None:
        raise click.ClickException(f"could not start: {problem}")
    click.echo("SIP2 server stopped.")


@click.command("hash-password")
@click.option(
    "--password",
    help="The password (visible to other users in the process list); without "
    "it, asked for twice on a terminal, or read as one line from standard input.",
)
def hash_password(password: str | None) -> None:
    """Print the hash of a SIP account password, for `password_hash` in the config.

    `echo "$SECRET" | ils hash-password` hashes the first line piped in.
    """
    from ils.secrets import hash_secret

    if password is None:
        if sys.stdin.isatty():
            password = click.prompt(
                "Password to hash", hide_input=True, confirmation_prompt=True
            )
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise click.ClickException("no password given (an empty one is not hashed)")
    click.echo(hash_secret(password))


def _check_listeners(config_path: Path, config: ServerConfig) -> None:
    """Parse every listener's endpoint (and read its TLS files) and the metrics
    endpoint as `ils serve` would, binding nothing.

    Raises:
        click.ClickException: one line per endpoint at fault, each naming the
            file and its key.
    """
    from twisted.internet import reactor

    from sip2server.app import StartupError, listener
    from sip2server.listeners import tls_options

    problems = []
    for key, settings in config.all_listeners():
        try:
            if settings.endpoint.startswith("systemd:"):
                # Only a process started by the .socket unit has the socket.
                click.echo(
                    f"{key}: {settings.endpoint} is checked when systemd starts "
                    "the server (systemd/ils-sip2server.socket)"
                )
            else:
                listener(reactor, settings.endpoint, key)
            if settings.tls is not None:
                tls_options(settings.tls, f"{key}.tls")
        except StartupError as error:
            problems.append(f"{config_path}: {error}")
    problem = _metrics_endpoint_problem(config, reactor)
    if problem is not None:
        problems.append(f"{config_path}: {problem}")
    if problems:
        raise click.ClickException("\n".join(problems))


def _metrics_endpoint_problem(config: ServerConfig, reactor: Any) -> str | None:
    # Parsed as `ils serve` parses it; nothing is bound.
    from sip2server.app import INSTANCE_FIELD, StartupError, listener

    endpoint = config.metrics.listen
    if endpoint is None:
        return None
    if INSTANCE_FIELD in endpoint:
        click.echo(
            f"metrics.listen: {endpoint} has {INSTANCE_FIELD}, so it is checked "
            "when each instance starts"
        )
        return None
    try:
        listener(reactor, endpoint, "metrics.listen")
    except StartupError as error:
        return str(error)
    return None


@click.command("check-config")
@click.argument("config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--db", "database_url", help="Database URL; overrides [database] url.")
@click.option(
    "--offline", is_flag=True, help="Check the file only; do not open the database."
)
def check_config(config_path: Path, database_url: str | None, offline: bool) -> None:
    """Check a server configuration file, and that its database is ready for it.

    Names the file, key and problem for each mistake; exits 1 if there is one.
    """
    config = _load(config_path, database_url)
    click.echo(f"{config_path}: {len(config.accounts)} account(s), syntax and keys ok")
    for warning in socket_activation_warnings(config):
        click.echo(f"warning: {config_path}: {warning}")
    missing = missing_tls_files(config)
    log_problem = transaction_log_problem(config)
    if log_problem is not None:
        missing.append(f"server.transaction_log: {log_problem}")
    if missing:
        raise click.ClickException(
            "\n".join(f"{config_path}: {problem}" for problem in missing)
        )
    if offline:
        return

    from ils.db import Database, DatabaseConfigError
    from sip2server.app import (
        StartupError,
        check_database,
        loan_rule_count,
        policy_code_problems,
    )

    _check_listeners(config_path, config)
    try:
        database = Database(config.database.url)
    except DatabaseConfigError as error:
        raise click.ClickException(f"{config_path}: database.url: {error}") from None
    try:
        check_database(database, config)
        problems = policy_code_problems(database, config)
        if problems:
            raise click.ClickException(
                "\n".join(f"{config_path}: {problem}" for problem in problems)
            )
        rules = loan_rule_count(database)
    except StartupError as error:
        raise click.ClickException(str(error)) from None
    except click.ClickException:
        raise
    except Exception as error:  # any driver error, reported plainly
        raise click.ClickException(f"cannot use the database: {error}") from None
    finally:
        database.dispose()
    click.echo(
        "database: schema current; every account's institution and branch exist "
        "(the branch its institution's), and every item type, patron category "
        "and institution the policies name"
    )
    if rules == 0:
        click.echo(
            "warning: the database has no loan rules, so every checkout will be "
            "refused; see docs/operating.md, section 2"
        )
