"""The kiosk's process ends when its work ends, thread pool or not.

Finding A1 of the second fresh-user walk of issue #6: checking a staff code
(or writing an RFID tag) starts the reactor's thread pool, whose threads are
not daemons, and `ils kiosk` then never exited after its window closed. Each
program runs in a child interpreter, shaped as `ils kiosk` (an asyncio task
on `shared_loop`) and as the tours and bench (`run_on_shared_loop`) run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from kiosk.harness import REPO_ROOT

AS_ILS_KIOSK = """
from twisted.internet import threads

from kiosk.loop import shared_loop


async def main(loop):
    # What a staff-code check does: a job on the reactor's thread pool.
    print(await threads.deferToThread(lambda: "checked").asFuture(loop))


with shared_loop() as (loop, reactor):
    loop.run_until_complete(main(loop))
print("ended", flush=True)
"""

AS_THE_TOURS = """
from twisted.internet import threads

from kiosk.harness import run_on_shared_loop


async def main(reactor):
    print(await threads.deferToThread(lambda: "checked"))


run_on_shared_loop(main)
print("ended", flush=True)
"""


@pytest.mark.parametrize("program", [AS_ILS_KIOSK, AS_THE_TOURS])
def test_the_process_exits_after_work_on_the_reactors_thread_pool(
    program: str,
) -> None:
    """The child prints both lines and exits by itself with status 0."""
    # Our own interpreter with a fixed program: nothing untrusted runs.
    finished = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(program)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert (0, ["checked", "ended"]) == (
        finished.returncode,
        finished.stdout.split(),
    )
