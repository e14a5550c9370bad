"""Listeners and process-wide sections of the server's configuration.

Layer: `sip2server`. Imports the standard library, pydantic and
`sip2server.account_config` (for the strict model base); never imports
Twisted, `ils`, or `sip2server.config` (which builds on this module).

Holds the [[listeners]] tables with their TLS settings, and the [server],
[metrics] and [database] sections.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationInfo, field_validator

from sip2server.account_config import _Strict

DEFAULT_LISTEN = "tcp:6001:interface=127.0.0.1"

# The longest timeout a setting may have: a day. Longer (or inf) is a slip of
# the keyboard, and no timer needs it.
MAX_TIMEOUT = 86_400.0
_Seconds = Annotated[float, Field(ge=0, le=MAX_TIMEOUT, allow_inf_nan=False)]


class TlsSettings(_Strict):
    """TLS on a listener: the server's certificate and, optionally, the terminals'."""

    # PEM files. The certificate file may hold the chain after the server's own.
    certificate: Path
    private_key: Path
    # PEM file of the authorities that sign terminals' certificates. When given,
    # a terminal without a certificate signed by one of them cannot connect.
    client_ca: Path | None = None


_REUSE_PORT_HINTS = {
    "ssl": "; for TLS on a shared port, give a tcp: endpoint a [listeners.tls] table",
    "systemd": (
        "; a systemd: socket belongs to its socket unit and is handed to one "
        "service; give each process a tcp: listener with reuse_port instead"
    ),
}


class ListenerConfig(_Strict):
    """One listening endpoint, with the accounts that may log in through it."""

    # A Twisted endpoint string: tcp:6001:interface=0.0.0.0, tcp6:6001:...,
    # haproxy:tcp:6002 (PROXY protocol v1 or v2 in front), systemd:domain=INET:
    # index=0 (socket activation), or ssl:6443:privateKey=...:certKey=...
    endpoint: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    # Logins that may use this listener; None allows every account.
    accounts: tuple[str, ...] | None = None
    # TLS inside this endpoint (after the PROXY header, if any).
    tls: TlsSettings | None = None
    # Seconds of silence before a connection is closed; None: [server] value.
    idle_timeout: _Seconds | None = None
    # Seconds to log in before a connection is closed; None: [server] value.
    login_timeout: _Seconds | None = None
    # TCP keepalive probes, so that a terminal that vanished (power cut, NAT
    # table flushed) is noticed: seconds idle before the first probe, seconds
    # between probes, unanswered probes before the connection is dropped.
    keepalive: bool = True
    keepalive_idle: Annotated[int, Field(ge=1, le=32767)] = 120
    keepalive_interval: Annotated[int, Field(ge=1, le=32767)] = 30
    keepalive_count: Annotated[int, Field(ge=1, le=127)] = 4
    # Whether a status request (99) is answered before the terminal logs in.
    status_before_login: bool = True
    # Bind a tcp: or tcp6: endpoint (also inside haproxy:) with SO_REUSEPORT,
    # so that several `ils serve` processes with this same file share the one
    # port and the kernel spreads new connections among them (Linux and the
    # BSDs; docs/deployment.md, "Several processes on one port"). Every process
    # on the port must set it; one that binds without it keeps the port alone.
    reuse_port: bool = False

    @field_validator("reuse_port")
    @classmethod
    def _reusable_endpoint(cls, value: bool, info: ValidationInfo) -> bool:
        endpoint = info.data.get("endpoint")
        if not value or endpoint is None:
            return value
        if not hasattr(socket, "SO_REUSEPORT"):
            raise ValueError(
                "this platform has no SO_REUSEPORT, so processes cannot share a "
                "port; run one process, or several on their own ports behind a "
                "load balancer"
            )
        kind = endpoint.lower().removeprefix("haproxy:").partition(":")[0]
        if kind not in ("tcp", "tcp6"):
            raise ValueError(
                f"only tcp: and tcp6: endpoints (also inside haproxy:) can share "
                f"a port, not {endpoint!r}{_REUSE_PORT_HINTS.get(kind, '')}"
            )
        return value


class MetricsSection(_Strict):
    """The HTTP endpoint for Prometheus (/metrics) and health checks (/healthz)."""

    # A Twisted endpoint string; None turns the endpoint off. Keep it on
    # loopback or a management network: it needs no password.
    listen: str | None = None


class ServerSection(_Strict):
    """Listeners and process-wide settings."""

    # Plain listeners open to every account. [[listeners]] tables add more with
    # their own settings; with neither, the server listens on DEFAULT_LISTEN.
    listen: list[str] | None = None

    @field_validator("listen", mode="before")
    @classmethod
    def _one_endpoint(cls, value: Any) -> Any:
        # listen = "tcp:6001" means the one endpoint, as ["tcp:6001"] does.
        return [value] if isinstance(value, str) else value

    # Threads that run database work, so a slow query never stalls other terminals.
    threads: Annotated[int, Field(ge=1, le=200)] = 10
    # Patron names and barcodes are masked in logs unless this is set to false.
    mask_patron_data: bool = True
    log_level: Annotated[
        str, StringConstraints(pattern="^(debug|info|warn|error)$")
    ] = "info"
    # Largest accepted frame in bytes; longer input is answered with 96.
    max_frame_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 8192
    # Seconds without a byte from a terminal before its connection is closed;
    # 0 keeps idle connections open. Kiosks send 99 every few minutes. Every
    # timeout is at most MAX_TIMEOUT (a day).
    idle_timeout: _Seconds = 0
    # Connections open at once, all listeners together; more are closed at once.
    max_connections: Annotated[int, Field(ge=1)] = 5000
    # Failed logins from one address within failed_login_window seconds after
    # which further logins from that address are refused until the window ends.
    max_failed_logins_per_address: Annotated[int, Field(ge=1)] = 20
    failed_login_window: Annotated[
        float, Field(gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)
    ] = 300
    # Threads that check login passwords (a deliberately slow hash), apart from
    # the request threads, so a flood of logins never delays circulation; and
    # logins that may wait for one: more are refused at once (940) as busy.
    login_threads: Annotated[int, Field(ge=1, le=16)] = 2
    login_backlog: Annotated[int, Field(ge=1)] = 16
    # Seconds a connection may stay open without logging in (0: no limit), so
    # idle connections that never log in cannot fill max_connections.
    login_timeout: _Seconds = 30
    # Connections from one address (an IPv6 /64) open at once and not logged
    # in; more from there are closed at once. Logged-in ones do not count.
    max_unauthenticated_per_address: Annotated[int, Field(ge=1)] = 50
    # One line per circulation transaction (checkout, checkin, renewal, fee,
    # hold, ...) with masked patron and item ids; None writes none. The file
    # is reopened on SIGHUP, for log rotation.
    transaction_log: Path | None = None


class DatabaseSection(_Strict):
    """Where the core database is."""

    url: Annotated[str, StringConstraints(min_length=1)]
    # SQLite only: seconds a request waits for another writer before it is
    # refused as "unavailable"; keep it below the terminals' own timeout.
    busy_timeout: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 5.0
    # SQLite only: "full" syncs every commit to disk; "normal" only at
    # checkpoints (faster writes; a power cut may undo the latest ones).
    sqlite_synchronous: Literal["full", "normal"] = "full"
