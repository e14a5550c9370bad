"""The idle timer: a countdown warning, then the end of the patron's session.

Layer: `kiosk`, plain Python (no Kivy, never `ils`). Time comes from an
injected clock with Twisted's `callLater` (the reactor in the kiosk, a
`twisted.internet.task.Clock` in tests), so tests never sleep.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class IdleTimer:
    """Calls `on_tick(seconds_left)` each second of the warning, then `on_expire()`.

    `poke()` (any touch, key or scan) starts the wait again and clears the
    warning with `on_tick(None)`.
    """

    def __init__(
        self,
        clock: Any,
        *,
        idle: float,
        warning: float,
        on_tick: Callable[[int | None], None],
        on_expire: Callable[[], None],
    ) -> None:
        self._clock = clock
        self.idle = idle
        self.warning = warning
        self._on_tick = on_tick
        self._on_expire = on_expire
        self._call: Any = None
        self._deadline = 0.0
        self.seconds_left: int | None = None

    @property
    def running(self) -> bool:
        """Whether the timer is counting."""
        return self._call is not None

    def poke(self) -> None:
        """Start (or restart) the wait; the warning, if shown, is cleared."""
        self._cancel()
        self._deadline = self._clock.seconds() + self.idle
        self._call = self._clock.callLater(self.idle - self.warning, self._tick)
        if self.seconds_left is not None:
            self.seconds_left = None
            self._on_tick(None)

    def stop(self) -> None:
        """Stop counting (no session to end)."""
        self._cancel()
        if self.seconds_left is not None:
            self.seconds_left = None
            self._on_tick(None)

    def _cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self) -> None:
        left = max(0, math.ceil(self._deadline - self._clock.seconds() - 1e-9))
        if left <= 0:
            self._call = None
            self.seconds_left = None
            self._on_expire()
            return
        self.seconds_left = left
        self._on_tick(left)
        self._call = self._clock.callLater(min(1.0, left), self._tick)
