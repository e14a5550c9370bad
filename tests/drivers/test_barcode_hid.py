"""Keyboard-wedge scanners: decoding recorded evdev events (shift, caps lock,
repeat, terminators, gaps), and the read loop on a pipe-backed device through
an unplug (ENODEV) and a replug.

There is no /dev/uinput here, so the read loop runs on a stand-in device: an
`evdev.InputDevice` whose descriptor is a pipe carrying real `input_event`
structs, read by evdev's own C reader. Only the ioctls (grab) are faked.
"""

from __future__ import annotations

import asyncio
import errno
import os
import struct
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import evdev
import pytest
import pytest_twisted
from evdev import ecodes
from twisted.internet import defer

from drivers.barcode.hid import (
    HidScanner,
    HidScannerSettings,
    KeyboardWedgeDecoder,
    find_input_device,
)
from drivers.events import BarcodeScanned, DeviceEvent, DeviceLost

DOWN, UP, REPEAT = 1, 0, 2
SHIFT = ecodes.KEY_LEFTSHIFT


class Recording:
    """Builds a recorded event sequence, as evtest would show it, 1 ms apart."""

    def __init__(self, start: float = 1000.0) -> None:
        self.time = start
        self.events: list[evdev.InputEvent] = []

    def _event(self, type_: int, code: int, value: int) -> None:
        sec = int(self.time)
        usec = round((self.time - sec) * 1_000_000)
        self.events.append(evdev.InputEvent(sec, usec, type_, code, value))

    def key(self, code: int, value: int) -> Recording:
        self._event(ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + code)
        self._event(ecodes.EV_KEY, code, value)
        self._event(ecodes.EV_SYN, ecodes.SYN_REPORT, 0)
        self.time += 0.001
        return self

    def tap(self, code: int) -> Recording:
        return self.key(code, DOWN).key(code, UP)

    def shifted(self, code: int) -> Recording:
        return self.key(SHIFT, DOWN).tap(code).key(SHIFT, UP)

    def typed(self, text: str) -> Recording:
        for char in text:
            code = ecodes.ecodes[f"KEY_{char.upper()}"]
            if char.isupper():
                self.shifted(code)
            else:
                self.tap(code)
        return self

    def dropped(self) -> Recording:
        """The kernel's SYN_DROPPED: events were lost after this point."""
        self._event(ecodes.EV_SYN, ecodes.SYN_DROPPED, 0)
        return self

    def wait(self, seconds: float) -> Recording:
        self.time += seconds
        return self


def test_shift_gives_capitals_and_symbols_and_enter_ends_the_code() -> None:
    """Shift held over a letter gives a capital and over 1 gives "!"; Enter ends
    the barcode; MSC and SYN events are ignored."""
    events = (
        Recording()
        .shifted(ecodes.KEY_A)
        .tap(ecodes.KEY_B)
        .tap(ecodes.KEY_1)
        .shifted(ecodes.KEY_1)
        .tap(ecodes.KEY_MINUS)
        .tap(ecodes.KEY_ENTER)
        .events
    )

    assert ["Ab1!-"] == KeyboardWedgeDecoder().feed_all(events)


def test_right_shift_and_caps_lock_combine() -> None:
    """Caps lock upper-cases letters only, and Shift with caps lock gives lower
    case again; digits are unaffected by caps lock."""
    events = (
        Recording()
        .tap(ecodes.KEY_CAPSLOCK)
        .tap(ecodes.KEY_X)
        .tap(ecodes.KEY_2)
        .key(ecodes.KEY_RIGHTSHIFT, DOWN)
        .tap(ecodes.KEY_Y)
        .key(ecodes.KEY_RIGHTSHIFT, UP)
        .tap(ecodes.KEY_KPENTER)
        .events
    )

    assert ["X2y"] == KeyboardWedgeDecoder().feed_all(events)


def test_auto_repeat_is_ignored() -> None:
    """A key held long enough to auto-repeat (value 2) still types once."""
    events = (
        Recording()
        .key(ecodes.KEY_3, DOWN)
        .key(ecodes.KEY_3, REPEAT)
        .key(ecodes.KEY_3, REPEAT)
        .key(ecodes.KEY_3, UP)
        .tap(ecodes.KEY_4)
        .key(ecodes.KEY_ENTER, DOWN)
        .key(ecodes.KEY_ENTER, REPEAT)
        .events
    )

    assert ["34"] == KeyboardWedgeDecoder().feed_all(events)


def test_a_configured_terminator_replaces_enter() -> None:
    """With Tab as the terminator, Tab ends the code and Enter does nothing."""
    events = Recording().typed("ab").tap(ecodes.KEY_ENTER).tap(ecodes.KEY_TAB).events

    decoder = KeyboardWedgeDecoder(terminators=[ecodes.KEY_TAB])

    assert ["ab"] == decoder.feed_all(events)


def test_a_long_gap_drops_the_unfinished_code() -> None:
    """A half-read code followed by a pause longer than `gap` is dropped, so the
    next scan comes out alone."""
    events = Recording().typed("12").wait(2.0).typed("34").tap(ecodes.KEY_ENTER).events

    assert ["34"] == KeyboardWedgeDecoder(gap=0.5).feed_all(events)
    assert ["1234"] == KeyboardWedgeDecoder(gap=None).feed_all(events)


def test_ctrl_letters_type_control_characters_and_unknown_keys_are_skipped() -> None:
    """Ctrl+B types STX (as scanners send framing); F1 types nothing."""
    events = (
        Recording()
        .key(ecodes.KEY_LEFTCTRL, DOWN)
        .tap(ecodes.KEY_B)
        .key(ecodes.KEY_LEFTCTRL, UP)
        .tap(ecodes.KEY_F1)
        .typed("a")
        .tap(ecodes.KEY_ENTER)
        .events
    )

    assert ["\x02a"] == KeyboardWedgeDecoder().feed_all(events)


def test_an_empty_enter_is_not_a_scan() -> None:
    """Enter with nothing typed before it gives no barcode."""
    assert [] == KeyboardWedgeDecoder().feed_all(
        Recording().tap(ecodes.KEY_ENTER).events
    )


class FakeInputDevice:
    """What find_input_device sees of a device: name, phys, close."""

    def __init__(self, path: str, name: str, phys: str) -> None:
        self.path, self.name, self.phys = path, name, phys
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_find_input_device_by_name_and_phys_closes_the_others() -> None:
    """The first device matching both name and phys is returned; the devices
    looked at on the way are closed; none matching is FileNotFoundError."""
    devices = {
        "/dev/input/event0": FakeInputDevice("/dev/input/event0", "Keyboard", "p0"),
        "/dev/input/event1": FakeInputDevice("/dev/input/event1", "Scanner", "p1"),
        "/dev/input/event2": FakeInputDevice("/dev/input/event2", "Scanner", "p2"),
    }

    def open_device(path: str) -> Any:
        return devices[path]

    found = find_input_device(
        name="Scanner",
        phys="p2",
        list_devices=lambda: sorted(devices),
        open_device=open_device,
    )

    assert devices["/dev/input/event2"] is found
    assert devices["/dev/input/event0"].closed
    assert devices["/dev/input/event1"].closed
    with pytest.raises(FileNotFoundError, match="name 'Gone'"):
        find_input_device(name="Gone", list_devices=list, open_device=open_device)


class PipeDevice(evdev.InputDevice):  # type: ignore[type-arg]
    """A stand-in for a scanner's event node: a pipe carrying `input_event`s.

    `grab` and `ungrab` only record (a pipe has no EVIOCGRAB); `unplug()` makes
    the next read fail with ENODEV, as the kernel does for a removed device.
    """

    write_fd: int
    grabbed: bool
    unplugged: bool

    @classmethod
    def create(cls, name: str = "Fake Scanner") -> PipeDevice:
        device = cls.__new__(cls)
        read_fd, device.write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        device.fd, device.path, device.name = read_fd, "<pipe>", name
        device.grabbed = device.unplugged = False
        return device

    def grab(self) -> None:
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def read(self) -> Iterator[evdev.InputEvent]:
        if self.unplugged:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return super().read()

    def send(self, events: list[evdev.InputEvent]) -> None:
        os.write(
            self.write_fd,
            b"".join(
                struct.pack("llHHi", e.sec, e.usec, e.type, e.code, e.value)
                for e in events
            ),
        )

    def unplug(self) -> None:
        self.unplugged = True
        os.write(self.write_fd, b"\0")  # wake the reader

    def close(self) -> None:
        super().close()
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1


def scanner_settings() -> HidScannerSettings:
    return HidScannerSettings.from_config(
        {
            "name": "kiosk-hid",
            "path": "/dev/input/by-id/usb-fake-event-kbd",
            "pipeline": {"item_pattern": "^3", "luhn": True},
        }
    )


class Waiter:
    """Collects events and wakes the test when a condition on them holds."""

    def __init__(self) -> None:
        self.events: list[DeviceEvent] = []
        self._pending: tuple[Callable[[list[DeviceEvent]], bool], Any] | None = None

    def __call__(self, event: DeviceEvent) -> None:
        self.events.append(event)
        if self._pending is not None and self._pending[0](self.events):
            future = self._pending[1]
            self._pending = None
            future.set_result(None)

    async def until(self, condition: Callable[[list[DeviceEvent]], bool]) -> None:
        if condition(self.events):
            return
        future = asyncio.get_running_loop().create_future()
        self._pending = (condition, future)
        await asyncio.wait_for(future, 10)


def on_asyncio(coroutine: Coroutine[Any, Any, None]) -> defer.Deferred[None]:
    """Run a test body as an asyncio task (the reactor's loop), for pytest-twisted."""
    return defer.Deferred.fromFuture(asyncio.ensure_future(coroutine))


def count(kind: type, events: list[DeviceEvent]) -> int:
    return sum(isinstance(e, kind) for e in events)


@pytest_twisted.ensureDeferred
async def test_read_loop_grabs_decodes_and_survives_an_unplug() -> None:
    """The scanner is grabbed and its scans decoded; an ENODEV read reports
    DeviceLost and releases it; while it is missing the loop waits 0.5 s then
    1 s (never spinning); found again, it reports DeviceBack and reads on."""
    await on_asyncio(unplug_and_replug())


async def unplug_and_replug() -> None:
    first, second = PipeDevice.create(), PipeDevice.create()
    openings: list[PipeDevice | OSError] = [
        first,
        FileNotFoundError(errno.ENOENT, "no such device"),
        second,
    ]

    def open_device() -> PipeDevice:
        next_one = openings.pop(0)
        if isinstance(next_one, OSError):
            raise next_one
        return next_one

    delays: list[float] = []

    async def record_delay(seconds: float) -> None:
        delays.append(seconds)

    waiter = Waiter()
    scanner = HidScanner(
        scanner_settings(), waiter, open_device=open_device, sleep=record_delay
    )
    task = asyncio.ensure_future(scanner.run())
    try:
        first.send(Recording().typed("39999000123453").tap(ecodes.KEY_ENTER).events)
        await waiter.until(lambda events: count(BarcodeScanned, events) == 1)
        assert first.grabbed

        first.unplug()
        await waiter.until(lambda events: len(events) == 3)
        assert not first.grabbed
        assert first.fd == -1
        assert second.grabbed

        second.send(Recording().typed("39999000123435").tap(ecodes.KEY_ENTER).events)
        second.send(Recording().typed("31").tap(ecodes.KEY_KPENTER).events)
        await waiter.until(lambda events: len(events) == 5)
    finally:
        scanner.stop()
        await task

    assert [0.5, 1.0] == delays
    assert [
        "BarcodeScanned",
        "DeviceLost",
        "DeviceBack",
        "BarcodeRejected",
        "BarcodeScanned",
    ] == [type(e).__name__ for e in waiter.events]
    scanned = waiter.events[0]
    assert isinstance(scanned, BarcodeScanned)
    assert ("kiosk-hid", "39999000123453", "item") == (
        scanned.device,
        scanned.barcode,
        scanned.kind,
    )
    lost = waiter.events[1]
    assert isinstance(lost, DeviceLost)
    assert os.strerror(errno.ENODEV) in lost.reason
    assert not second.grabbed
    assert second.fd == -1


@pytest_twisted.ensureDeferred
async def test_a_device_grabbed_by_another_program_is_reported_and_retried() -> None:
    """When the grab fails (another program holds the scanner), the device is
    closed, DeviceLost says why, and the loop tries again after a delay."""
    await on_asyncio(grab_refused())


async def grab_refused() -> None:

    class Busy(PipeDevice):
        def grab(self) -> None:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))

    busy = Busy.create()
    waiter = Waiter()

    async def stop_after_first_wait(seconds: float) -> None:
        scanner.stop()

    scanner = HidScanner(
        scanner_settings(),
        waiter,
        open_device=lambda: busy,
        sleep=stop_after_first_wait,
    )
    await scanner.run()

    (lost,) = waiter.events
    assert isinstance(lost, DeviceLost)
    assert "cannot grab" in lost.reason
    assert -1 == busy.fd


@pytest_twisted.ensureDeferred
async def test_stop_wakes_a_loop_waiting_for_keys_or_for_the_device() -> None:
    """stop() ends run() both while it waits for input and while it waits to
    look for a lost device again, with the real (interruptible) pause."""
    await on_asyncio(stop_while_waiting())


async def stop_while_waiting() -> None:
    device = PipeDevice.create()
    scanner = HidScanner(
        scanner_settings(), lambda event: None, open_device=lambda: device
    )
    task = asyncio.ensure_future(scanner.run())
    await asyncio.sleep(0)
    scanner.stop()
    await task
    assert -1 == device.fd

    missing = HidScanner(
        scanner_settings(),
        lambda event: None,
        open_device=lambda: (_ for _ in ()).throw(FileNotFoundError("gone")),
    )
    task = asyncio.ensure_future(missing.run())
    await asyncio.sleep(0)
    missing.stop()
    await asyncio.wait_for(task, 10)
    assert task.done()


def test_hid_settings_name_the_key_of_a_mistake() -> None:
    """A scanner with no way to find it, or a negative gap, is refused naming
    the key."""
    with pytest.raises(ValueError, match=r"scanner\.path: give path"):
        HidScannerSettings.from_config({"name": "x"})
    with pytest.raises(ValueError, match=r"scanner\.gap: must be a number"):
        HidScannerSettings.from_config({"name": "x", "path": "/p", "gap": -1})


@pytest_twisted.ensureDeferred
async def test_a_scanner_that_is_not_plugged_in_is_reported_lost(
    tmp_path: Path,
) -> None:
    """With the real evdev lookup, a by-id path that does not exist is
    DeviceLost ("cannot open"), and the loop waits instead of spinning."""
    await on_asyncio(missing_by_path(str(tmp_path / "usb-none-event-kbd")))


async def missing_by_path(path: str) -> None:
    settings = HidScannerSettings.from_config({"name": "kiosk-hid", "path": path})
    waiter = Waiter()
    delays: list[float] = []

    async def record_and_stop(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 3:
            scanner.stop()

    scanner = HidScanner(settings, waiter, sleep=record_and_stop)
    await scanner.run()

    assert [0.5, 1.0, 2.0] == delays
    (lost,) = waiter.events
    assert isinstance(lost, DeviceLost)
    assert lost.reason.startswith("cannot open")


def test_syn_dropped_forgets_a_held_modifier_whose_release_was_lost() -> None:
    """The kernel drops events (SYN_DROPPED) while Ctrl and Shift are held and
    their releases are lost: the next scan still types plain digits."""
    events = (
        Recording()
        .key(ecodes.KEY_LEFTCTRL, DOWN)
        .key(SHIFT, DOWN)
        .dropped()
        .typed("31234000000016")
        .tap(ecodes.KEY_ENTER)
        .events
    )

    assert ["31234000000016"] == KeyboardWedgeDecoder().feed_all(events)


def test_a_long_gap_also_forgets_held_modifiers() -> None:
    """Shift pressed and never released, then a pause longer than `gap`: the
    next scan is not shifted, while Shift pressed within it still works."""
    events = (
        Recording()
        .key(SHIFT, DOWN)
        .wait(2.0)
        .typed("12")
        .shifted(ecodes.KEY_A)
        .tap(ecodes.KEY_ENTER)
        .events
    )

    assert ["12A"] == KeyboardWedgeDecoder(gap=0.5).feed_all(events)


def test_a_code_longer_than_max_length_is_dropped_whole() -> None:
    """Like the serial framer, the decoder drops an over-long code instead of
    cutting it short, and the next code comes out whole."""
    events = (
        Recording()
        .typed("123456")
        .tap(ecodes.KEY_ENTER)
        .typed("1234")
        .tap(ecodes.KEY_ENTER)
        .events
    )

    assert ["1234"] == KeyboardWedgeDecoder(max_length=5).feed_all(events)
