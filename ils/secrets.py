"""Salted, slow hashes for patron PINs and SIP account passwords.

Layer: `ils`, the bottom. Imports only the standard library.

A stored hash describes itself: `scrypt$<n>$<r>$<p>$<salt>$<hash>`, with the
salt and hash in unpadded URL-safe base64. A hash keeps the cost it was made
with, so the defaults can be raised later and old hashes still verify.

Cost: n=2**13, r=8, p=1 (8 MiB of memory) took about 26 ms per hash on the
2-core development machine (measured 2026-12-04 with `hashlib.scrypt` over 20
runs). Every kiosk checkout may verify a PIN, so the cost is kept modest; PINs
are short, and the real defence against guessing is the terminal's lockout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

SCHEME = "scrypt"
# The cost of new hashes (see the module docstring for the measurement).
DEFAULT_N = 2**13
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32

# Refuse stored parameters that would make one verify absurdly expensive: a
# corrupted or hostile row must not be able to stall a server thread.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAX_MEMORY = 256 * 1024 * 1024


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(secret: str, salt: bytes, *, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=length,
        maxmem=_MAX_MEMORY,
    )


def hash_secret(secret: str) -> str:
    """Hash a PIN or password with scrypt and a fresh random salt.

    Returns:
        The self-describing hash to store, e.g. `scrypt$8192$8$1$<salt>$<hash>`.
    """
    salt = os.urandom(SALT_BYTES)
    derived = _derive(
        secret, salt, n=DEFAULT_N, r=DEFAULT_R, p=DEFAULT_P, length=HASH_BYTES
    )
    return "$".join(
        (
            SCHEME,
            str(DEFAULT_N),
            str(DEFAULT_R),
            str(DEFAULT_P),
            _encode(salt),
            _encode(derived),
        )
    )


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = _decode(parts[4]), _decode(parts[5])
    except ValueError:
        return None
    power_of_two = n > 1 and n & (n - 1) == 0
    if not (power_of_two and n <= _MAX_N and 0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return None
    if _memory(n, r, p) > _MAX_MEMORY:
        # hashlib.scrypt would refuse it with a ValueError of its own.
        return None
    if not salt or not expected:
        return None
    return n, r, p, salt, expected


def _memory(n: int, r: int, p: int) -> int:
    # What OpenSSL's scrypt reserves (and checks against maxmem): 128 * r * p
    # bytes of blocks and 128 * r * (n + 2) of its table.
    return 128 * r * p + 128 * r * (n + 2)


def hash_problem(stored: str) -> str | None:
    """Why `stored` is not a hash `verify_secret` can check, or None if it is.

    A configuration file can refuse such a hash when it is read, instead of
    every password checked against it failing.
    """
    if _parse(stored) is not None:
        return None
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return (
            f"not a {SCHEME}$n$r$p$salt$hash value; make one with `ils hash-password`"
        )
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    except ValueError:
        return "its cost parameters n, r and p are not whole numbers"
    if not (n > 1 and n & (n - 1) == 0 and n <= _MAX_N):
        return f"its n ({parts[1]}) is not a power of two from 2 to {_MAX_N}"
    if not (0 < r <= _MAX_R and 0 < p <= _MAX_P):
        return f"its r ({r}) or p ({p}) is outside 1..{_MAX_R} and 1..{_MAX_P}"
    if _memory(n, r, p) > _MAX_MEMORY:
        mebibytes = _MAX_MEMORY // (1024 * 1024)
        return f"n={n}, r={r} would need more than the {mebibytes} MiB allowed"
    return "its salt or hash is empty or not URL-safe base64"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether `secret` is the one `stored` was made from.

    The comparison takes the same time wherever the hashes differ. A stored
    value that is not a hash this module can read never matches.
    """
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    derived = _derive(secret, salt, n=n, r=r, p=p, length=len(expected))
    return hmac.compare_digest(derived, expected)


def needs_rehash(stored: str) -> bool:
    """Whether a stored hash was made with other than today's parameters."""
    parsed = _parse(stored)
    if parsed is None:
        return True
    n, r, p, salt, expected = parsed
    return (n, r, p, len(salt), len(expected)) != (
        DEFAULT_N,
        DEFAULT_R,
        DEFAULT_P,
        SALT_BYTES,
        HASH_BYTES,
    )
