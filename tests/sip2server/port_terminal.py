"""A blocking SIP2 connection to a server on a loopback port, for the tests
that run the server as a separate process (test_faults, test_shared_port).

Test support for tests/sip2server, not a test module: raw frames out, replies
cut at the CR that ends them. Imports only the standard library and the test
frames of test_wire_behaviour.
"""

from __future__ import annotations

import socket

from tests.sip2server.test_wire_behaviour import LOGIN_FRAME


class Terminal:
    """A blocking SIP2 connection: raw frames out, replies cut at CR."""

    def __init__(self, port: int, *, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self._buffer = b""

    def send(self, frame: bytes) -> bytes:
        """Send `frame` and return the next reply, without its CR."""
        self.sock.sendall(frame)
        while b"\r" not in self._buffer:
            data = self.sock.recv(4096)
            if not data:
                raise ConnectionError("the server closed the connection")
            self._buffer += data
        reply, _, self._buffer = self._buffer.partition(b"\r")
        return reply

    def login(self) -> None:
        """Log in as the test kiosk; the reply must be exactly 941."""
        assert b"941" == self.send(LOGIN_FRAME)

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()
