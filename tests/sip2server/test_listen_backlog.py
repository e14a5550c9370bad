"""Listeners get a listen backlog of 1024 unless their endpoint string gives one."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import reactor

from sip2server.listeners import DEFAULT_BACKLOG, endpoint_from, with_default_backlog


def _backlog(endpoint: Any) -> int:
    # A haproxy: endpoint wraps the TCP one that listens.
    inner = getattr(endpoint, "_wrappedEndpoint", endpoint)
    return int(inner._backlog)


@pytest.mark.parametrize(
    "description",
    ["tcp:6001:interface=127.0.0.1", "tcp6:6001:interface=\\:\\:1", "haproxy:tcp:6001"],
)
def test_tcp_endpoints_without_a_backlog_get_1024(description: str) -> None:
    """A TCP listener whose string names no backlog listens with 1024, not 50."""
    assert DEFAULT_BACKLOG == 1024
    assert _backlog(endpoint_from(reactor, description, "listen")) == 1024


def test_a_backlog_given_in_the_string_is_kept() -> None:
    """An explicit backlog= in the endpoint string wins over the default."""
    endpoint = endpoint_from(reactor, "tcp:6001:backlog=7", "listen")
    assert _backlog(endpoint) == 7


def test_other_endpoint_types_are_left_alone() -> None:
    """Strings for endpoints that are not TCP or TLS are not changed."""
    assert with_default_backlog("systemd:domain=INET:index=0") == (
        "systemd:domain=INET:index=0"
    )
    assert with_default_backlog("unix:/run/sip.sock") == "unix:/run/sip.sock"
    assert with_default_backlog("ssl:6002:privateKey=k.pem") == (
        "ssl:6002:privateKey=k.pem:backlog=1024"
    )
