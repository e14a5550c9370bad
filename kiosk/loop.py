"""One event loop for Kivy and Twisted, from start to a clean exit.

Layer: `kiosk` start-up plumbing: the standard library and Twisted only (no
Kivy, never `ils`). `ils kiosk`, the screenshot tours and the benchmark all
start and end their loop through `shared_loop`, so that they end the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from twisted.internet import defer


@contextmanager
def shared_loop() -> Iterator[tuple[asyncio.AbstractEventLoop, Any]]:
    """A new asyncio loop with Twisted's asyncio reactor running on it.

    Yields `(loop, reactor)`. On the way out the reactor's thread pool is
    stopped (checking a staff code, or writing an RFID tag, starts it) and the
    loop is closed: the pool's threads are not daemons, and left running they
    would keep the process alive after its window closed, deaf to SIGTERM.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor  # noqa: PLC0415

    asyncioreactor.install(loop)  # type: ignore[no-untyped-call]
    from twisted.internet import reactor  # noqa: PLC0415

    reactor.startRunning(installSignalHandlers=False)
    try:
        yield loop, reactor
    finally:
        stop_threads(reactor)
        loop.close()


def run_on_shared_loop(main: Callable[[Any], Awaitable[None]]) -> None:
    """Run `main(reactor)`, a coroutine that awaits Deferreds, on `shared_loop`."""
    with shared_loop() as (loop, reactor):

        async def whole() -> None:
            await main(reactor)

        done: defer.Deferred[None] = defer.ensureDeferred(whole())
        loop.run_until_complete(done.asFuture(loop))


def stop_threads(reactor: Any) -> None:
    """Stop the reactor's thread pool, waiting for its jobs, if it was made."""
    pool = getattr(reactor, "threadpool", None)
    if pool is not None:
        pool.stop()
