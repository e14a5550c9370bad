"""USB HID keyboard-wedge scanners, read through python-evdev.

Layer: `drivers`. Imports the standard library, python-evdev and the other
`drivers` modules; never `ils`, the server or the kiosk.

`KeyboardWedgeDecoder` is sans-I/O: it is fed `evdev.InputEvent`s (live or
recorded) and returns whole barcodes. `HidScanner` runs on the asyncio event
loop: it finds the device (by path, name or phys), grabs it so that the
scanner's keystrokes never reach the kiosk's window (a PIN field), feeds the
decoder, and when the device vanishes (a read fails with ENODEV) it reports
`DeviceLost` and looks for it again with a growing delay, never spinning.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import evdev
from evdev import ecodes

from drivers.barcode.keymap import US_KEYMAP, Keymap
from drivers.barcode.pipeline import BarcodePipeline, ScannerConfigError
from drivers.events import DeviceBack, DeviceLost
from drivers.stream import Backoff, EventSink, guarded_sink, utc_now

__all__ = [
    "HidScanner",
    "HidScannerSettings",
    "KeyboardWedgeDecoder",
    "find_input_device",
]

Device = evdev.InputDevice[str]
"""An opened input device (its path is a str)."""

# Key event values in the Linux input protocol (EV_KEY).
KEY_UP = 0
KEY_DOWN = 1
KEY_REPEAT = 2

_SHIFT = frozenset({ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT})
_CTRL = frozenset({ecodes.KEY_LEFTCTRL, ecodes.KEY_RIGHTCTRL})
DEFAULT_TERMINATORS = (ecodes.KEY_ENTER, ecodes.KEY_KPENTER)

_HID_KEYS = (
    "name",
    "kind",
    "path",
    "device_name",
    "phys",
    "terminators",
    "gap",
    "grab",
    "max_length",
    "pipeline",
)


class KeyboardWedgeDecoder:
    """Key events in, barcodes out: a US keymap with shift, caps lock and Ctrl.

    Only key presses (value 1) type; releases matter only for Shift and Ctrl;
    auto-repeat (value 2) is ignored, since a scanner never holds a key. A
    terminator key (Enter or keypad Enter by default) ends a barcode. When
    `gap` is set, a key arriving more than `gap` seconds after the previous one
    (by the events' own timestamps) first discards the unfinished barcode and
    forgets held Shift and Ctrl, so a half-read code never prefixes the next
    scan and a lost key release cannot shift every later one. `SYN_DROPPED`
    (the kernel lost events) does the same at once. Ctrl with a letter types
    the control character (Ctrl+B is STX), as scanners do to send framing. A
    code longer than `max_length` is dropped whole at its terminator, as the
    serial framer drops one.
    """

    def __init__(
        self,
        *,
        keymap: Keymap = US_KEYMAP,
        terminators: Iterable[int] = DEFAULT_TERMINATORS,
        gap: float | None = None,
        max_length: int = 256,
    ) -> None:
        self.keymap = keymap
        self.terminators = frozenset(terminators)
        self.gap = gap
        self.max_length = max_length
        self.reset()

    def reset(self) -> None:
        """Forget modifiers and any unfinished barcode (after a reconnect)."""
        self._chars: list[str] = []
        self._shift: set[int] = set()
        self._ctrl: set[int] = set()
        self._caps = False
        self._last: float | None = None
        self._too_long = False

    def _forget_keys(self) -> None:
        self._chars.clear()
        self._too_long = False
        self._shift.clear()
        self._ctrl.clear()

    def feed(self, event: evdev.InputEvent) -> str | None:
        """Take one event; return a barcode when it was the terminator."""
        if event.type == ecodes.EV_SYN and event.code == ecodes.SYN_DROPPED:
            # Events were lost, key releases among them: start from nothing held.
            self._forget_keys()
            return None
        if event.type != ecodes.EV_KEY or event.value == KEY_REPEAT:
            return None
        code, down = event.code, event.value == KEY_DOWN
        if down:
            self._note_press(event.timestamp())
        if code in _SHIFT or code in _CTRL:
            held = self._shift if code in _SHIFT else self._ctrl
            if down:
                held.add(code)
            else:
                held.discard(code)
            return None
        if not down:
            return None
        if code == ecodes.KEY_CAPSLOCK:
            self._caps = not self._caps
            return None

        if code in self.terminators:
            barcode = "".join(self._chars)
            too_long, self._too_long = self._too_long, False
            self._chars.clear()
            return None if too_long else barcode or None
        self._type(code)
        return None

    def _note_press(self, now: float) -> None:
        # A pause longer than the gap: whatever was half-typed or held is stale.
        if (
            self.gap is not None
            and self._last is not None
            and now - self._last > self.gap
        ):
            self._forget_keys()
        self._last = now

    def _type(self, code: int) -> None:
        char = self._character(code)
        if char is None:
            return
        if len(self._chars) < self.max_length:
            self._chars.append(char)
        else:
            self._too_long = True

    def feed_all(self, events: Iterable[evdev.InputEvent]) -> list[str]:
        """Take many events; return every barcode they complete, in order."""
        barcodes = []
        for event in events:
            barcode = self.feed(event)
            if barcode is not None:
                barcodes.append(barcode)
        return barcodes

    def _character(self, code: int) -> str | None:
        pair = self.keymap.get(code)
        if pair is None:
            return None
        plain, shifted = pair
        if self._ctrl:
            if plain.isalpha() and len(plain) == 1:
                return chr(ord(plain.lower()) - ord("a") + 1)
            return None
        use_shift = bool(self._shift)
        if self._caps and plain.isalpha():
            use_shift = not use_shift
        return shifted if use_shift else plain


def find_input_device(
    *,
    path: str | None = None,
    name: str | None = None,
    phys: str | None = None,
    list_devices: Callable[[], Sequence[str]] = evdev.list_devices,
    open_device: Callable[[str], Device] = evdev.InputDevice,
) -> Device:
    """Open the input device given by path, or the first with this name and phys.

    Prefer a stable path (`/dev/input/by-id/usb-...-event-kbd`); `name` and
    `phys` (as `evtest` shows them) find a scanner whose event number changes.

    Raises:
        FileNotFoundError: no such device now (unplugged).
        OSError: the device exists but cannot be opened (permissions).
    """
    if path is not None:
        return open_device(path)
    if name is None and phys is None:
        raise ValueError("give a path, a name or a phys to find the scanner by")
    for candidate in list_devices():
        try:
            device = open_device(candidate)
        except OSError:
            continue
        if (name is None or device.name == name) and (
            phys is None or device.phys == phys
        ):
            return device
        device.close()
    wanted = " and ".join(
        f"{key} {value!r}" for key, value in (("name", name), ("phys", phys)) if value
    )
    raise FileNotFoundError(errno.ENOENT, f"no input device with {wanted}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HidScannerSettings:
    """A keyboard-wedge scanner's settings.

    Config keys (a `[[scanner]]` table with `kind = "hid"`): `name` (device
    name in events), one or more of `path`, `device_name`, `phys` (how to find
    it), `terminators` (key names, default ["KEY_ENTER", "KEY_KPENTER"]),
    `gap` (seconds between keys before an unfinished code is dropped, default
    0.5; 0 turns it off), `grab` (default true), `max_length` (256) and a
    `pipeline` table.
    """

    name: str
    pipeline: BarcodePipeline
    path: str | None = None
    device_name: str | None = None
    phys: str | None = None
    terminators: tuple[int, ...] = DEFAULT_TERMINATORS
    gap: float | None = 0.5
    grab: bool = True
    max_length: int = 256

    @classmethod
    def from_config(
        cls,
        table: Mapping[str, object],
        *,
        key: str = "scanner",
        source: str | None = None,
    ) -> HidScannerSettings:
        """Build the settings from a config table.

        Raises:
            ScannerConfigError: a key is missing, unknown or has a wrong value.
        """

        def error(name: str, problem: str) -> ScannerConfigError:
            return ScannerConfigError(f"{key}.{name}", problem, source=source)

        for name in table:
            if name not in _HID_KEYS:
                raise error(name, f"unknown key; known keys: {', '.join(_HID_KEYS)}")

        def text(name: str) -> str | None:
            value = table.get(name)
            if value is not None and (not isinstance(value, str) or not value):
                raise error(name, f"must be a non-empty string, not {value!r}")
            return value

        device = text("name")
        if device is None:
            raise error("name", "is required")
        path, device_name, phys = text("path"), text("device_name"), text("phys")
        if path is None and device_name is None and phys is None:
            raise error("path", "give path, device_name or phys to find the scanner")

        names = table.get("terminators", ["KEY_ENTER", "KEY_KPENTER"])
        if not isinstance(names, list) or not names:
            raise error("terminators", "must be a non-empty list of key names")
        terminators = []
        for index, key_name in enumerate(names):
            code = ecodes.ecodes.get(key_name) if isinstance(key_name, str) else None
            if code is None or not str(key_name).startswith("KEY_"):
                raise error(
                    f"terminators[{index}]",
                    f"not a key name such as KEY_ENTER: {key_name!r}",
                )
            terminators.append(code)

        gap = table.get("gap", 0.5)
        if isinstance(gap, bool) or not isinstance(gap, int | float) or gap < 0:
            raise error("gap", f"must be a number of seconds (0 for none), not {gap!r}")
        grab = table.get("grab", True)
        if not isinstance(grab, bool):
            raise error("grab", f"must be true or false, not {grab!r}")
        max_length = table.get("max_length", 256)
        if (
            isinstance(max_length, bool)
            or not isinstance(max_length, int)
            or max_length < 1
        ):
            raise error(
                "max_length", f"must be a positive whole number, not {max_length!r}"
            )
        pipeline_table = table.get("pipeline", {})
        if not isinstance(pipeline_table, Mapping):
            raise error("pipeline", "must be a table")

        return cls(
            name=device,
            path=path,
            device_name=device_name,
            phys=phys,
            terminators=tuple(terminators),
            gap=float(gap) or None,
            grab=grab,
            max_length=max_length,
            pipeline=BarcodePipeline.from_config(
                pipeline_table, key=f"{key}.pipeline", source=source
            ),
        )

    def decoder(self) -> KeyboardWedgeDecoder:
        """A fresh decoder with these settings."""
        return KeyboardWedgeDecoder(
            terminators=self.terminators, gap=self.gap, max_length=self.max_length
        )

    def find(self) -> Device:
        """Open the scanner's input device.

        Raises:
            OSError: it is not there now, or cannot be opened.
        """
        return find_input_device(path=self.path, name=self.device_name, phys=self.phys)


class HidScanner:
    """Reads one keyboard-wedge scanner on the asyncio loop until `stop()`.

    `open_device` replaces `settings.find` (tests pass a pipe-backed device);
    `sleep(seconds)` is the pause between attempts to find a lost device (tests
    pass one that records the delay). Events go to `on_event` on the loop.
    """

    def __init__(
        self,
        settings: HidScannerSettings,
        on_event: EventSink,
        *,
        open_device: Callable[[], Device] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self._on_event = guarded_sink(on_event, settings.name)
        self._open = open_device or settings.find
        self._sleep = sleep or self._pause
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._decoder = settings.decoder()
        self._stopping = False
        self._lost = False
        self._wake: asyncio.Future[None] | None = None

    async def run(self) -> None:
        """Read scans until `stop()`; find the device again whenever it is lost."""
        while not self._stopping:
            device = self._connect()
            if device is None:
                await self._sleep(self._backoff.next_delay())
                continue
            try:
                await self._read(device)
            except OSError as error:
                self._lose(f"read failed: {error}")
            finally:
                self._release(device)
            if not self._stopping:
                await self._sleep(self._backoff.next_delay())

    def stop(self) -> None:
        """Make `run()` return soon (call it on the event loop)."""
        self._stopping = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _connect(self) -> Device | None:
        try:
            device = self._open()
        except OSError as error:
            self._lose(f"cannot open: {error}")
            return None
        if self.settings.grab:
            try:
                # Exclusive: the keystrokes must not also type into the kiosk.
                device.grab()
            except OSError as error:
                device.close()
                self._lose(f"cannot grab (in use by another program?): {error}")
                return None
        self._decoder.reset()
        if self._lost:
            self._lost = False
            self._on_event(DeviceBack(device=self.settings.name, at=self._clock()))
        return device

    async def _read(self, device: Device) -> None:
        while not self._stopping:
            await self._readable(device.fd)
            if self._stopping:
                return
            try:
                batch = list(device.read())
            except BlockingIOError:
                continue
            if not batch:
                # A device node never ends; only a pipe standing in for one does.
                raise OSError(errno.ENODEV, "end of input")
            # Input arrived: the device really is back, so the next loss starts
            # the delays from the shortest again.
            self._backoff.reset()
            for event in batch:
                barcode = self._decoder.feed(event)
                if barcode is not None:
                    self._on_event(
                        self.settings.pipeline.event(
                            barcode, device=self.settings.name, at=self._clock()
                        )
                    )

    async def _readable(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake

        def ready() -> None:
            if not wake.done():
                wake.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await wake
        finally:
            loop.remove_reader(fd)
            self._wake = None

    async def _pause(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        self._wake = wake

        def done() -> None:
            if not wake.done():
                wake.set_result(None)

        handle = loop.call_later(seconds, done)
        try:
            await wake
        finally:
            handle.cancel()
            self._wake = None

    def _lose(self, reason: str) -> None:
        if not self._lost:
            self._lost = True
            self._on_event(
                DeviceLost(device=self.settings.name, reason=reason, at=self._clock())
            )

    def _release(self, device: Device) -> None:
        if self.settings.grab:
            with contextlib.suppress(OSError):
                device.ungrab()
        with contextlib.suppress(OSError):
            device.close()
