"""A small blocking SIP2 client, for `ils sip`, scripts and troubleshooting.

Layer: `sip2server`, usable by the kiosk and drivers (it imports only the codec
and the standard library). It numbers requests (AY 0-9, then 0 again), adds
checksums when asked, verifies those of replies, and frames replies with the
same sans-I/O `Framer` the server uses.
"""

from __future__ import annotations

import select
import socket
import ssl
import time
from types import TracebackType
from typing import Any, Self

from sip2server.protocol import Decoded, Frame, Framer, decode, encode


class SipClientError(ConnectionError):
    """The server closed the connection, timed out or sent something unusable."""


class SipClient:
    """One connection to a SIP2 server, used request by request.

    `timeout` bounds each wait for bytes; `deadline`, if given, bounds a whole
    request, so a server that keeps sending without ever ending its reply
    cannot hold the caller (without it, only `timeout` applies, as before).
    `tls`, if given, wraps the connection in TLS with that context (which says
    whom to trust and which client certificate to show); the server's name is
    checked against `server_hostname`, by default `host`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 10.0,
        error_detection: bool = True,
        encoding: str = "utf-8",
        terminator: bytes = b"\r",
        deadline: float | None = None,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.deadline = deadline
        self.error_detection = error_detection
        self.encoding = encoding
        self.terminator = terminator
        self.tls = tls
        self.server_hostname = server_hostname
        self._sequence = 0
        self._socket: socket.socket | None = None
        self._framer = Framer()
        self._frames: list[Frame] = []
        #: The payload of the last reply received, for troubleshooting output.
        self.last_reply = b""
        #: The last frame sent, terminator included (secrets in clear: redact it).
        self.last_request = b""

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Open the TCP connection (and make the TLS handshake, with `tls`)."""
        try:
            plain = socket.create_connection(
                (self.host, self.port), timeout=self.timeout
            )
        except OSError as error:
            raise SipClientError(
                f"cannot connect to {self.host}:{self.port}: {error}"
            ) from error
        if self.tls is None:
            self._socket = plain
            return
        try:
            self._socket = self.tls.wrap_socket(
                plain, server_hostname=self.server_hostname or self.host
            )
        except (OSError, ssl.CertificateError) as error:
            plain.close()
            raise SipClientError(
                f"TLS with {self.host}:{self.port} failed: {error}"
            ) from error

    def close(self) -> None:
        """Close the connection, if open; bytes of a reply not yet whole are
        dropped with it, so a later `connect` starts clean."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self._framer = Framer()
        self._frames = []

    def closed_by_server(self) -> bool:
        """Whether the server has closed the connection, found without waiting:
        it is readable and reading gives the end of the stream. Bytes it sent
        unasked are kept, as `exchange` would have read them."""
        if self._socket is None:
            return False
        readable, _, _ = select.select([self._socket], [], [], 0)
        if not readable:
            return False
        previous = self._socket.gettimeout()
        self._socket.settimeout(0)
        try:
            data = self._socket.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return False  # TLS records that were no data yet
        except OSError:
            return True  # reset by the server
        finally:
            if self._socket is not None:
                self._socket.settimeout(previous)
        if not data:
            return True
        self._frames.extend(self._framer.feed(data))
        return False

    def request(self, message: Any) -> Decoded:
        """Send one request message and return the decoded reply."""
        sequence = self._sequence if self.error_detection else None
        self._sequence = (self._sequence + 1) % 10
        frame = encode(
            message,
            sequence=sequence,
            error_detection=self.error_detection,
            encoding=self.encoding,
            terminator=self.terminator,
        )
        reply = self.exchange(frame)
        return decode(reply, encoding=self.encoding)

    def exchange(self, frame: bytes) -> bytes:
        """Send raw bytes (a whole frame) and return the next reply's payload."""
        if self._socket is None:
            raise SipClientError("not connected")
        end = None if self.deadline is None else time.monotonic() + self.deadline
        self.last_request = frame
        try:
            self._socket.sendall(frame)
            while not self._frames:
                if end is not None:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise TimeoutError
                    self._socket.settimeout(min(self.timeout, left))
                data = self._socket.recv(65536)
                if not data:
                    raise SipClientError("the server closed the connection")
                self._frames.extend(self._framer.feed(data))
        except TimeoutError as error:
            if end is not None and time.monotonic() >= end:
                raise SipClientError(
                    f"no complete reply within {self.deadline:g} s from "
                    f"{self.host}:{self.port}"
                ) from error
            raise SipClientError(
                f"no reply within {self.timeout:g} s from {self.host}:{self.port}"
            ) from error
        except SipClientError:
            raise  # already says what happened (it is an OSError too)
        except OSError as error:
            raise SipClientError(f"connection failed: {error}") from error
        self.last_reply = self._frames.pop(0).payload
        return self.last_reply
