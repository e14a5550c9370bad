"""A simulated RFID reader: tags in a field, speaking Feig ISO host or 3M 810.

Layer: `drivers`. Imports the standard library and `drivers.rfid`; it stands in
for reader hardware in tests, in the kiosk's demo mode and for the gate.
Never imports `ils` or `kiosk`.

- `SimulatedTag` and `TagField` (from `drivers.rfid.emulation`): the tags.
- `ReaderSimulator`: one field and one protocol served over loopback TCP
  (`socket://` for pyserial) or a pty, from a background thread; with faults to
  inject (bad CRCs, truncated replies, silence, a tag leaving mid-write).

Command line (prints the URL or device to open, then takes `put UID`,
`take UID`, `list` and `quit` on standard input)::

    .venv/bin/python -m drivers.rfid.simulator --protocol feig --listen 127.0.0.1:0 \\
        --tags drivers/rfid/demo-tags.toml
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import socket
import sys
import threading
import tomllib
import tty
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from drivers.rfid.emulation import (
    BLOCK_SIZE,
    Emulation,
    FeigEmulation,
    SimulatedTag,
    TagField,
    ThreeMEmulation,
)
from drivers.rfid.tags import (
    BasicBlock,
    BlockOrder,
    TagDataError,
    TypeOfUsage,
    split_isil,
)

__all__ = [
    "InProcessStream",
    "ReaderSimulator",
    "SimulatedTag",
    "TagField",
    "load_tags",
    "main",
]

PROTOCOLS: dict[str, Callable[[TagField], Emulation]] = {
    "feig": FeigEmulation,
    "3m": ThreeMEmulation,
    # The gate's configuration calls the 3M protocol "3m810"; both are accepted.
    "3m810": ThreeMEmulation,
}

MAX_BLOCKS = 256
"""ISO 15693 addresses blocks with one byte: at most 256 of them."""


class ReaderSimulator:
    """A simulated reader: a field, a protocol, faults, and where it is served.

    Use as a context manager, or call `close()`. Faults apply to the next
    replies of any connection, in the order asked for.
    """

    def __init__(self, tags: TagField, protocol: str = "feig") -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"protocol must be one of {sorted(PROTOCOLS)}: {protocol!r}"
            )
        self.tags = tags
        self.protocol = protocol
        self.requests = 0
        self._lock = threading.Lock()
        self._faults: list[str] = []
        self._silent = False
        self._loop: _IoLoop | None = None
        self.url = ""
        self.device = ""

    def corrupt_next_replies(self, count: int = 1) -> None:
        """Send the next `count` replies with a wrong CRC."""
        with self._lock:
            self._faults += ["corrupt"] * count

    def truncate_next_replies(self, count: int = 1) -> None:
        """Send only the first half of the next `count` replies."""
        with self._lock:
            self._faults += ["truncate"] * count

    def drop_next_replies(self, count: int = 1) -> None:
        """Send nothing for the next `count` requests."""
        with self._lock:
            self._faults += ["drop"] * count

    @property
    def silent(self) -> bool:
        """Whether the reader answers nothing at all (powered off, unplugged)."""
        return self._silent

    @silent.setter
    def silent(self, value: bool) -> None:
        self._silent = value

    def emulation(self) -> Emulation:
        """A fresh protocol state for one connection."""
        return PROTOCOLS[self.protocol](self.tags)

    def answer(self, emulation: Emulation, data: bytes) -> bytes:
        """The bytes to send back for `data`, faults applied."""
        out = b""
        for frame in emulation.receive(data):
            reply = frame
            with self._lock:
                self.requests += 1
                fault = self._faults.pop(0) if self._faults else None
            if self._silent or fault == "drop":
                continue
            if fault == "corrupt":
                reply = reply[:-1] + bytes([reply[-1] ^ 0xFF])
            elif fault == "truncate":
                reply = reply[: len(reply) // 2]
            out += reply
        return out

    def open_stream(self) -> InProcessStream:
        """A byte stream wired straight to this simulator, with no thread or
        socket: replies are ready as soon as a request is written, and a read
        with nothing pending returns at once, as if its timeout had passed."""
        return InProcessStream(self)

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host:port`; return the pyserial URL (`socket://HOST:PORT`)."""
        listener = socket.create_server((host, port))
        bound_host, bound_port = listener.getsockname()[:2]
        self._start().add_listener(listener)
        self.url = f"socket://{bound_host}:{bound_port}"
        return self.url

    def serve_pty(self) -> str:
        """Open a pty pair; return the device path a driver opens with pyserial."""
        master, slave = os.openpty()
        tty.setraw(slave)
        self._start().add_pty(master, slave)
        self.device = os.ttyname(slave)
        return self.device

    def serve_device(self, path: str) -> str:
        """Serve on an existing serial device or pty end (one side of a socat
        pair, or a real port with a null-modem cable); return `path`."""
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        if os.isatty(fd):
            tty.setraw(fd)
        self._start().add_device(fd)
        self.device = path
        return path

    def _start(self) -> _IoLoop:
        if self._loop is None:
            self._loop = _IoLoop(self)
            self._loop.start()
        return self._loop

    def close(self) -> None:
        """Stop serving and close every socket and pty."""
        if self._loop is not None:
            self._loop.stop()
            self._loop = None

    def __enter__(self) -> ReaderSimulator:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class InProcessStream:
    """A pyserial-like stream to a simulator in the same thread (see
    `ReaderSimulator.open_stream`)."""

    def __init__(self, simulator: ReaderSimulator) -> None:
        self._simulator = simulator
        self._emulation = simulator.emulation()
        self._pending = bytearray()
        self.timeout = 0.0

    def write(self, data: bytes, /) -> int:
        """Hand `data` to the simulated reader; its replies become readable."""
        self._pending += self._simulator.answer(self._emulation, bytes(data))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        """Up to `size` pending reply bytes; b"" at once when there are none."""
        chunk = bytes(self._pending[:size])
        del self._pending[:size]
        return chunk

    def reset_input_buffer(self) -> None:
        """Drop pending reply bytes."""
        self._pending.clear()

    def close(self) -> None:
        """Nothing to release."""


class _IoLoop(threading.Thread):
    """One thread serving every listener, connection and pty of a simulator.

    Sources are handed over through a queue and registered on the loop's own
    thread, so the selector is only ever touched by that thread.
    """

    def __init__(self, simulator: ReaderSimulator) -> None:
        super().__init__(name=f"rfid-simulator-{simulator.protocol}", daemon=True)
        self._simulator = simulator
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._stopping = False
        self._pending: list[tuple[socket.socket | int, Callable[[], None]]] = []
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def add_listener(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self._hand_over(listener, lambda: self._accept(listener), listener.close)

    def add_pty(self, master: int, slave: int) -> None:
        emulation = self._simulator.emulation()

        def close() -> None:
            os.close(master)
            os.close(slave)

        self._hand_over(master, lambda: self._pty_readable(master, emulation), close)

    def add_device(self, fd: int) -> None:
        emulation = self._simulator.emulation()
        self._hand_over(
            fd, lambda: self._pty_readable(fd, emulation), lambda: os.close(fd)
        )

    def _hand_over(
        self,
        source: socket.socket | int,
        callback: Callable[[], None],
        close: Callable[[], None],
    ) -> None:
        with self._lock:
            self._pending.append((source, callback))
            self._closers.append(close)
        self._wake_write.send(b"\0")

    def _accept(self, listener: socket.socket) -> None:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return
        connection.setblocking(True)
        emulation = self._simulator.emulation()
        self._selector.register(
            connection,
            selectors.EVENT_READ,
            lambda: self._connection_readable(connection, emulation),
        )

    def _connection_readable(
        self, connection: socket.socket, emulation: Emulation
    ) -> None:
        try:
            data = connection.recv(4096)
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(connection)
            connection.close()
            return
        reply = self._simulator.answer(emulation, data)
        if reply:
            with contextlib.suppress(OSError):
                connection.sendall(reply)

    def _pty_readable(self, master: int, emulation: Emulation) -> None:
        try:
            data = os.read(master, 4096)
        except OSError:
            data = b""
        if not data:
            # The other end is gone for good (socat stopped): stop watching
            # the descriptor instead of spinning on it.
            self._selector.unregister(master)
            return
        reply = self._simulator.answer(emulation, data)
        if reply:
            os.write(master, reply)

    def run(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    break
                pending, self._pending = self._pending, []
            for source, callback in pending:
                self._selector.register(source, selectors.EVENT_READ, callback)
            for key, _ in self._selector.select():
                if key.data is None:
                    self._wake_read.recv(64)
                    continue
                try:
                    key.data()
                except Exception as error:
                    # A bug answering one request must not stop the simulated
                    # reader: say so, and go on serving.
                    print(
                        f"rfid simulator: error answering a request: {error!r}",
                        file=sys.stderr,
                        flush=True,
                    )
        for key in list(self._selector.get_map().values()):
            if isinstance(key.fileobj, socket.socket) and key.data is not None:
                key.fileobj.close()
        self._selector.close()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake_write.send(b"\0")
        self.join(timeout=5)
        for close in self._closers:
            with contextlib.suppress(OSError):
                close()
        self._wake_read.close()
        self._wake_write.close()


class TagsFileError(ValueError):
    """A simulator tags file that cannot be used; the message names file and key."""


_TAG_KEYS = frozenset(
    {"uid", "item_id", "parts", "part", "usage", "owner", "afi", "eas", "order"}
    | {"size", "blocks", "present"}
)


def load_tags(path: Path) -> list[tuple[SimulatedTag, bool]]:
    """Read a TOML tags file: each `[[tags]]` table is one tag.

    Keys: `uid` (16 hex digits), `item_id`, `parts`, `part`, `usage` (a
    TypeOfUsage name such as "circulating"), `owner` (an ISIL), `afi`
    (default 0x07), `eas` (true, false, or "none" for a tag without EAS),
    `order` ("natural" or "reversed"), `size` (34 or 32), `blocks` (28) and
    `present` (whether it starts in the field, default true). A tag without
    `item_id` is blank.

    Returns:
        Each tag with whether it starts in the field.

    Raises:
        TagsFileError: unreadable TOML or a bad value, naming the file and key.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TagsFileError(f"{path}: {error}") from error
    entries = document.get("tags", [])
    if not isinstance(entries, list):
        raise TagsFileError(f"{path}: `tags` must be an array of tables ([[tags]])")
    loaded = []
    for index, entry in enumerate(entries, start=1):
        where = f"{path}: tags #{index}"
        if not isinstance(entry, dict):
            raise TagsFileError(f"{where}: must be a table")
        unknown = sorted(set(entry) - _TAG_KEYS)
        if unknown:
            raise TagsFileError(f"{where}: unknown key {unknown[0]!r}")
        try:
            loaded.append((_tag_from(entry), bool(entry.get("present", True))))
        except KeyError as error:
            raise TagsFileError(f"{where}: missing key {error.args[0]!r}") from None
        except (ValueError, TypeError) as error:
            raise TagsFileError(f"{where}: {error}") from None
    return loaded


def _tag_from(entry: dict[str, object]) -> SimulatedTag:
    uid = str(entry["uid"])
    try:
        SimulatedTag(uid=uid)
    except ValueError as error:
        raise ValueError(f"key 'uid': {error}") from None
    afi = int(str(entry.get("afi", 0x07)), 0)
    if not 0 <= afi <= 255:
        raise ValueError(f"key 'afi' must be 0-255, not {afi}")
    eas_value = entry.get("eas", False)
    if eas_value not in (True, False, "none"):
        raise ValueError("key 'eas' must be true, false or \"none\"")
    eas = None if eas_value == "none" else bool(eas_value)
    blocks = int(str(entry.get("blocks", 28)))
    # The basic block needs 9 blocks (34 bytes), or 8 for the 32-byte form.
    fewest = 0 if "item_id" not in entry else 8 if entry.get("size") == 32 else 9
    if not max(fewest, 1) <= blocks <= MAX_BLOCKS:
        holds = " to hold the basic block" if fewest else ""
        raise ValueError(
            f"key 'blocks' must be {max(fewest, 1)}-{MAX_BLOCKS}{holds}, not {blocks}"
        )
    if "item_id" not in entry:
        return SimulatedTag(
            uid=uid, memory=bytearray(blocks * BLOCK_SIZE), afi=afi, eas=eas
        )
    country, library = ("", "")
    if "owner" in entry:
        country, library = split_isil(str(entry["owner"]))
    usage_name = str(entry.get("usage", "circulating")).upper()
    if usage_name not in TypeOfUsage.__members__:
        raise ValueError(f"key 'usage' is not a type of usage: {usage_name.lower()!r}")
    try:
        data = BasicBlock(
            item_id=str(entry["item_id"]),
            parts=int(str(entry.get("parts", 1))),
            part=int(str(entry.get("part", 1))),
            usage=TypeOfUsage[usage_name],
            country=country,
            library=library,
        )
        order = BlockOrder(str(entry.get("order", "natural")))
        size = int(str(entry.get("size", 34)))
        return SimulatedTag.with_data(
            uid, data, afi=afi, eas=eas, order=order, size=size, blocks=blocks
        )
    except TagDataError as error:
        raise ValueError(str(error)) from None


def _parse_listen(value: str) -> tuple[str, int]:
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen is HOST:PORT, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _console(simulator: ReaderSimulator, known: dict[str, SimulatedTag]) -> None:
    """Take `put UID`, `take UID`, `list` and `quit` lines from standard input."""
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        command, args = words[0].lower(), words[1:]
        if command == "quit":
            return
        if command == "list":
            present = set(simulator.tags.uids())
            for uid in known:
                print(f"{uid} {'in field' if uid in present else 'out'}", flush=True)
        elif command in ("put", "take") and len(args) == 1:
            uid = args[0].upper()
            if uid not in known:
                print(
                    f"{command} {uid}: no such tag in the tags file (see `list`)",
                    flush=True,
                )
                continue
            if command == "put":
                simulator.tags.put(known[uid])
            else:
                simulator.tags.take(uid)
            print(f"{command} {uid}: ok", flush=True)
        else:
            print("commands: put UID, take UID, list, quit", flush=True)
    # Standard input closed (run as a service): serve until stopped.
    threading.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run a simulated reader until `quit` or Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m drivers.rfid.simulator",
        description="A simulated RFID reader with tags in its field.",
    )
    parser.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="feig",
        help='the reader protocol: "feig", or "3m" (also "3m810", as in gate.toml)',
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--listen",
        type=_parse_listen,
        default=("127.0.0.1", 0),
        help="serve on loopback TCP HOST:PORT (default 127.0.0.1:0, any free port)",
    )
    where.add_argument("--pty", action="store_true", help="serve on a new pty")
    where.add_argument(
        "--device", help="serve on this serial device (e.g. one end of a socat pair)"
    )
    parser.add_argument("--tags", type=Path, help="TOML file of [[tags]] tables")
    options = parser.parse_args(argv)

    known: dict[str, SimulatedTag] = {}
    field_tags = TagField()
    if options.tags is not None:
        try:
            loaded = load_tags(options.tags)
        except TagsFileError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for tag, present in loaded:
            known[tag.uid] = tag
            if present:
                field_tags.put(tag)

    with ReaderSimulator(field_tags, options.protocol) as simulator:
        if options.device:
            where_served = simulator.serve_device(options.device)
            print(f"{options.protocol} reader on {where_served}", flush=True)
        elif options.pty:
            print(
                f"{options.protocol} reader on pty {simulator.serve_pty()}", flush=True
            )
        else:
            url = simulator.serve_tcp(*options.listen)
            print(f"{options.protocol} reader on {url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            _console(simulator, known)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
