"""Twisted endpoint strings read as text: which interface and port each binds,
and which of several would bind the same one twice.

Layer: `sip2server`. Standard library only (no Twisted: the configuration
checks a file with it before any reactor exists).

Twisted separates an endpoint's arguments with `:` and escapes a `:` inside
one with a backslash (`tcp6:6001:interface=\\:\\:1`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping


def split_unescaped(text: str, separator: str) -> list[str]:
    """`text` split at each `separator` not escaped by a backslash; the
    backslashes stay in the parts.

    Raises:
        ValueError: the text ends with a lone backslash.
    """
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if escaped:
        raise ValueError("it ends with a lone backslash")
    parts.append("".join(current))
    return parts


# Addresses that bind every interface: compared, never bound, here.
_ANY_IPV4 = ipaddress.ip_address("0.0.0.0")  # noqa: S104
_ANY_ADDRESS = ipaddress.ip_address("::")


def _arguments(endpoint: str) -> list[str] | None:
    """An endpoint string's kind and arguments, unescaped, with a `haproxy:`
    prefix taken off; None for text that does not parse."""
    try:
        parts = [
            re.sub(r"\\(.)", r"\1", part)
            for part in split_unescaped(endpoint.strip(), ":")
        ]
    except ValueError:
        return None
    if parts[0].lower() == "haproxy":
        parts = parts[1:] or [""]
    return parts


def tls_files(endpoint: str) -> tuple[str, str] | None:
    """The private key file and certificate file an ssl: endpoint string (also
    inside haproxy:) reads, as Twisted reads them: `privateKey`, by default
    server.pem in the working folder, and `certKey`, by default the key's file.
    None for other kinds and text that does not parse."""
    parts = _arguments(endpoint)
    if parts is None or parts[0].lower() != "ssl":
        return None
    named = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    key = named.get("privateKey", "server.pem")
    return key, named.get("certKey", key)


def bound_address(endpoint: str) -> tuple[str, int] | None:
    """The interface and port a tcp:, tcp6: or ssl: endpoint string (also
    inside haproxy:) binds, as Twisted reads it; None for other kinds, port 0
    (any free port) and text that does not parse (Twisted names that).
    """
    parts = _arguments(endpoint)
    if parts is None:
        return None
    kind = parts[0].lower()
    if kind not in ("tcp", "tcp6", "ssl"):
        return None
    named = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    given = [part for part in parts[1:] if "=" not in part]
    port_text = named.get("port", given[0] if given else "")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) == 0:
        return None
    wildcard = _ANY_ADDRESS if kind == "tcp6" else _ANY_IPV4
    interface = named.get("interface", str(wildcard))
    try:
        interface = str(ipaddress.ip_address(interface))
    except ValueError:
        interface = interface.lower()
    return interface, int(port_text)


def _overlap(one: str, other: str) -> bool:
    # Whether two interfaces on one port collide in bind(): the same address,
    # 0.0.0.0 with any IPv4 address, or :: (dual stack) with any address.
    if one == other:
        return True
    try:
        first, second = ipaddress.ip_address(one), ipaddress.ip_address(other)
    except ValueError:
        return False
    for wildcard, address in ((first, second), (second, first)):
        if wildcard == _ANY_ADDRESS or (wildcard == _ANY_IPV4 and address.version == 4):
            return True
    return False


def clashes(endpoints: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each (key, endpoint) that binds a port an earlier one binds, with the
    problem naming that earlier key; `ils serve` would stop at it with
    "Address already in use". Port 0 and kinds other than tcp, tcp6 and ssl
    are not compared.
    """
    seen: list[tuple[str, str, str, int]] = []
    problems = []
    for key, endpoint in endpoints:
        address = bound_address(endpoint)
        if address is None:
            continue
        interface, port = address
        for other_key, other, other_interface, other_port in seen:
            if port == other_port and _overlap(interface, other_interface):
                problems.append(
                    (
                        key,
                        f"{endpoint!r} binds port {port} on {interface}, which "
                        f"{other_key} ({other!r}) already binds; give each "
                        "listener and the metrics endpoint a port of its own",
                    )
                )
                break
        else:
            seen.append((key, endpoint, interface, port))
    return problems


# How to see which sockets the socket unit hands over, and under which names.
_SYSTEMD_CHECK = (
    "check with `systemctl status ils-sip2server.socket` (is it active, and did "
    "it start the server?) and `systemctl show -p FileDescriptorName "
    "ils-sip2server.socket`"
)


def systemd_problem(endpoint: str, environment: Mapping[str, str]) -> str:
    """What is wrong with a systemd: endpoint Twisted could not use, given the
    variables systemd sets for a socket-activated process (LISTEN_FDS and
    LISTEN_FDNAMES) in `environment`: no such socket was handed over, or the
    text itself is wrong; the problem says how to check and what to write."""
    parts = _arguments(endpoint) or ["systemd"]
    named = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    passed = [name for name in environment.get("LISTEN_FDNAMES", "").split(":") if name]
    count = environment.get("LISTEN_FDS", "")
    if "domain" not in named or ("name" in named) == ("index" in named):
        return (
            "a systemd: endpoint needs domain= (INET or INET6) and one of name= "
            "(the socket unit's FileDescriptorName=) or index=, e.g. "
            "systemd:domain=INET6:name=sip2"
        )
    if not count:
        started = (
            "systemd passed no sockets (LISTEN_FDS is not set): the server was not "
            "started by its socket unit"
        )
    else:
        names = ", ".join(repr(name) for name in passed) or "none"
        started = f"systemd passed {count} socket(s), named {names}"
    if "name" in named:
        return (
            f"no socket named {named['name']!r} was passed by systemd ({started}, "
            "or the unit's FileDescriptorName= differs); " + _SYSTEMD_CHECK
        )
    return (
        f"no socket number {named['index']} was passed by systemd ({started}); "
        + _SYSTEMD_CHECK
    )
