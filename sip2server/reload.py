"""Reloading the configuration of a running server (SIGHUP).

Layer: `sip2server`. Re-reads the file, checks it (and its accounts' places in
the database) in full before touching anything, then swaps in the accounts,
their policies and each listener's account set. A connected terminal moves to
the new account of its login at once (its next request sees the new policy,
sort bins, messages and output settings); one whose login was removed, left
off its listener, given a new password, no longer allowed from its address or
now tied to certificates that leave out its connection's is closed, and the
log says why. A file that does not pass is refused with the
file, key and problem, and the running configuration stays.

Limits take effect too: `max_connections`, the failed-login limit,
`login_threads` and `login_backlog`, `max_unauthenticated_per_address` for
connections from then on, and
`login_timeout` also for connections not logged in yet (see
`listeners.move_login_deadlines`). A TLS listener reads its certificate, key
and client CA files again, so renewed files (at the same paths or new ones)
serve every new connection; a file that cannot be read refuses the reload.

What needs a restart (a listener's endpoint, TLS turned on or off on a
listener, a new listener, the database, the thread counts, the metrics port)
is reported, not applied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from sip2server.app import (
    LibraryPlaces,
    RunningServer,
    check_database,
    circulation_for,
    configured_listeners,
    policy_code_problems,
)
from sip2server.config import ConfigError, ServerConfig, TlsSettings
from sip2server.listeners import (
    StartupError,
    book_for,
    reserved_logins,
    tls_options,
)

log = Logger(namespace="sip2server")


@defer.inlineCallbacks
def reload_server(
    running: RunningServer,
    reactor: Any,
    load: Callable[[], ServerConfig],
    *,
    source: Path | str | None = None,
) -> Any:
    """Load, check and apply a new configuration; fires with True if applied.

    A refused configuration is logged one problem per event, each naming
    `source` (the file read) as the configuration's own errors do.
    """
    if running.transactions is not None:
        # Whatever the new file says, logrotate's SIGHUP means "reopen".
        running.transactions.reopen()
    try:
        config = load()
    except ConfigError as error:
        # Each line already names the file and the key.
        _refused(str(error).splitlines())
        return False
    tls_wanted = _tls_to_read(running, config)
    try:
        places, problems, tls = yield deferToThreadPool(
            reactor, running.threadpool, _check, running.database, config, tls_wanted
        )
    except StartupError as error:
        prefix = "" if source is None else f"{source}: "
        _refused(f"{prefix}{line}" for line in str(error).splitlines())
        return False
    except Exception as error:
        log.error(
            "configuration not reloaded, the database could not be asked whether "
            "its accounts' institutions and branches exist: {problem}",
            problem=str(error).splitlines()[0] if str(error) else type(error).__name__,
        )
        return False
    for problem in problems:
        log.warn("configuration: {problem}", problem=problem)
    for note in apply_config(running, config, places, tls=tls):
        log.info("reload: {note}", note=note)
    log.info("configuration reloaded: {count} account(s)", count=len(config.accounts))
    return True


def _refused(problems: Iterable[str]) -> None:
    # One event per problem: a log line holds one, and a multi-line message
    # would reach a journal or a file as one line with escaped line breaks.
    for problem in problems:
        log.error(
            "configuration not reloaded, the running one stays: {problem}",
            problem=problem,
        )


def _tls_to_read(
    running: RunningServer, config: ServerConfig
) -> dict[str, TlsSettings]:
    # The TLS settings of listeners that run with TLS and keep it (and their
    # endpoint) in the new file: those can take new files without a restart.
    wanted = dict(configured_listeners(config, running.listen_override))
    found = {}
    for listener in running.listeners:
        settings = wanted.get(listener.key)
        if (
            listener.tls is not None
            and settings is not None
            and settings.endpoint == listener.config.endpoint
            and settings.tls is not None
        ):
            found[listener.key] = settings.tls
    return found


def _check(
    database: Any, config: ServerConfig, tls_wanted: dict[str, TlsSettings]
) -> tuple[LibraryPlaces, list[str], dict[str, tuple[TlsSettings, Any]]]:
    # In a worker thread: the places every account needs, codes the policies
    # name that the database lacks (logged, not refused), and the TLS files
    # read again (a file that cannot be read raises StartupError).
    tls = {
        key: (settings, tls_options(settings, f"{key}.tls"))
        for key, settings in tls_wanted.items()
    }
    return (
        check_database(database, config),
        policy_code_problems(database, config),
        tls,
    )


def apply_config(
    running: RunningServer,
    config: ServerConfig,
    places: LibraryPlaces,
    *,
    tls: dict[str, tuple[TlsSettings, Any]] | None = None,
) -> list[str]:
    """Swap a checked configuration into a running server; returns what changed.

    `tls` holds, per listener key, TLS settings and the options read from
    their files, for listeners that run with TLS and keep it.
    """
    notes = _account_changes(running.config, config)
    old = running.config
    running.config = config
    running.circulation = circulation_for(
        running.database, places, reply_bytes=config.server.max_frame_bytes
    )
    _apply_limits(running, config)
    notes += _apply_listeners(running, config, tls or {})
    _rebind_terminals(running)
    return notes + _restart_notes(old, config)


def _apply_limits(running: RunningServer, config: ServerConfig) -> None:
    server = config.server
    running.admission.configure(
        max_connections=server.max_connections,
        max_failed_logins=server.max_failed_logins_per_address,
        window=server.failed_login_window,
    )
    # Read on the reactor's thread only (as a connection is introduced), as
    # this runs: for connections from now on; those waiting stay.
    running.admission.max_unauthenticated_per_address = (
        server.max_unauthenticated_per_address
    )
    if running.logins is not None:
        # Logins from now on wait for, and run on, the new numbers of threads.
        running.logins.backlog = server.login_backlog
        running.logins.pool.adjustPoolsize(
            minthreads=min(running.logins.pool.min, server.login_threads),
            maxthreads=server.login_threads,
        )
    for listener in running.listeners:
        listener.factory.mask_patron_data = server.mask_patron_data
        listener.factory.max_frame_bytes = server.max_frame_bytes


def _apply_listeners(
    running: RunningServer,
    config: ServerConfig,
    tls: dict[str, tuple[TlsSettings, Any]],
) -> list[str]:
    notes = []
    server = config.server
    wanted = dict(configured_listeners(config, running.listen_override))
    reserved = reserved_logins(wanted.values())
    for listener in running.listeners:
        settings = wanted.get(listener.key)
        if settings is None or settings.endpoint != listener.config.endpoint:
            notes.append(
                f"{listener.key}: its endpoint changed or was removed; that takes "
                "a restart (until then it admits the accounts it did, as the new "
                "file defines them)"
            )
            listener.accounts = book_for(listener.config, config.accounts, reserved)
            continue
        if listener.key in tls:
            new_settings, options = tls[listener.key]
            listener.replace_tls(new_settings, options)
            notes.append(
                f"{listener.key}: TLS files read again; new connections use them"
            )
        elif settings.tls != listener.config.tls:
            notes.append(
                f"{listener.key}: TLS turned on or off takes a restart "
                "(until then it keeps its TLS settings)"
            )
        if settings.reuse_port != listener.config.reuse_port:
            notes.append(
                f"{listener.key}: reuse_port changes at the next restart (the "
                "socket is bound once)"
            )
        listener.apply(
            settings.model_copy(
                update={
                    "tls": listener.config.tls,
                    "reuse_port": listener.config.reuse_port,
                }
            ),
            config.accounts,
            server.idle_timeout,
            reserved,
            login_timeout=server.login_timeout,
        )
    running_keys = {listener.key for listener in running.listeners}
    notes += [
        f"{key}: a new listener starts at the next restart"
        for key in wanted
        if key not in running_keys
    ]
    return notes


def _restart_notes(old: ServerConfig, config: ServerConfig) -> list[str]:
    notes = []
    server = config.server
    if config.database != old.database:
        notes.append("database settings change at the next restart")
    if config.metrics != old.metrics:
        notes.append("metrics.listen changes at the next restart")
    if server.threads != old.server.threads:
        notes.append("server.threads changes at the next restart")
    if server.log_level != old.server.log_level:
        notes.append("server.log_level changes at the next restart")
    if server.transaction_log != old.server.transaction_log:
        notes.append("server.transaction_log changes at the next restart")
    return notes


def _rebind_terminals(running: RunningServer) -> None:
    # Terminals already logged in move to their login's new account, or are
    # closed if it no longer lets them in (SipConnection.rebind).
    for listener in running.listeners:
        for connection in list(listener.factory.connections):
            connection.rebind(listener.accounts, running.circulation)


def _account_changes(old: ServerConfig, new: ServerConfig) -> list[str]:
    before = {account.login: account for account in old.accounts}
    after = {account.login: account for account in new.accounts}
    notes = [f"account {login!r} added" for login in sorted(set(after) - set(before))]
    notes += [
        f"account {login!r} removed (its connected terminals are closed)"
        for login in sorted(set(before) - set(after))
    ]
    notes += [
        f"account {login!r} changed"
        for login in sorted(set(before) & set(after))
        # By their settings: == on the models would also compare the compiled
        # templates and rules a policy keeps, which are never equal.
        if before[login].model_dump() != after[login].model_dump()
    ]
    return notes
