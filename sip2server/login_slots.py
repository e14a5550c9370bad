"""The threads that check login passwords, apart from the request threads.

Layer: `sip2server`, beside the Twisted server (`sip2server.server` sends each
login to these threads). Uses the standard library and Twisted's thread pool
only; must not import `kiosk` or `drivers`.
"""

from __future__ import annotations

import ctypes
import functools

from twisted.python.threadpool import ThreadPool

# glibc's mallopt parameter for the size from which blocks are mapped on their
# own (and unmapped when freed), and the size we fix it at.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 20


@functools.cache
def return_hash_memory() -> bool:
    """Have the C library give large blocks back to the system when freed.

    Each login check runs scrypt, whose table is 8 MiB (n = 2**13, r = 8). By
    default glibc raises its mapping threshold past a block that size once the
    first one is freed, so every thread that has hashed a password keeps 8 to
    16 MiB in its own arena for good: about 30 MB with two login threads,
    measured with `bench/load.py --idle`. Fixing the threshold at 1 MiB makes
    such blocks mapped and unmapped each time. Process-wide and done once;
    False, changing nothing, where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))


class LoginSlots:
    """The threads that check login passwords, and the logins waiting for them.

    Password hashes are slow on purpose; run on the request threads, a flood
    of logins (from many spoofed addresses, each under its own limit) would
    make every terminal's checkouts wait behind them. Logins get their own
    small pool instead, and at most `backlog` of them wait: a login beyond
    that is refused at once as busy (940), which a terminal retries.
    Used on the reactor's thread only. Making one also makes the hashes'
    memory go back to the system after each check (`return_hash_memory`).
    """

    def __init__(self, pool: ThreadPool, backlog: int) -> None:
        return_hash_memory()
        self.pool = pool
        self.backlog = backlog
        self.waiting = 0
        self.refused = 0

    @property
    def full(self) -> bool:
        """Whether a new login must be refused as busy."""
        return self.waiting >= self.backlog


# Why a login was refused when the login threads were all taken.
LOGINS_BUSY = "server busy checking other logins; try again"
