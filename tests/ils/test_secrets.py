"""PIN and password hashing with scrypt."""

from __future__ import annotations

import base64
import hashlib
import time

from ils.secrets import hash_secret, needs_rehash, verify_secret


def test_a_secret_verifies_against_its_own_hash() -> None:
    """The hash of a PIN accepts that PIN and refuses another."""
    stored = hash_secret("4321")
    assert verify_secret("4321", stored) is True
    assert verify_secret("4322", stored) is False
    assert verify_secret("", stored) is False


def test_the_hash_describes_its_parameters_and_is_salted() -> None:
    """A hash reads scrypt$n$r$p$salt$hash, and two hashes of one PIN differ."""
    first = hash_secret("4321")
    second = hash_secret("4321")
    parts = first.split("$")
    assert parts[:4] == ["scrypt", "8192", "8", "1"]
    assert len(parts) == 6
    assert first != second
    assert "4321" not in first


def test_a_hash_made_with_other_parameters_still_verifies() -> None:
    """A stored hash with a lower cost is verified with its own parameters."""
    salt = b"0123456789abcdef"
    derived = hashlib.scrypt(b"pw", salt=salt, n=1024, r=4, p=1, dklen=32)

    def encode(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    stored = f"scrypt$1024$4$1${encode(salt)}${encode(derived)}"
    assert verify_secret("pw", stored) is True
    assert needs_rehash(stored) is True
    assert needs_rehash(hash_secret("pw")) is False


def test_unreadable_or_hostile_hashes_never_match() -> None:
    """Garbage, another scheme, or absurd cost parameters are refused, not run."""
    good = hash_secret("pw")
    salt, digest = good.split("$")[4:]
    for stored in (
        "",
        "pw",
        "bcrypt$2b$12$abc",
        f"scrypt$8192$8$1${salt}",
        f"scrypt$1000$8$1${salt}${digest}",
        f"scrypt$1073741824$8$1${salt}${digest}",
        f"scrypt$8192$8$1$!!!${digest}",
    ):
        assert verify_secret("pw", stored) is False, stored


def test_verifying_takes_tens_of_milliseconds_not_seconds() -> None:
    """One verify is slow enough to hinder guessing but quick enough for a kiosk."""
    stored = hash_secret("4321")
    started = time.perf_counter()
    verify_secret("4321", stored)
    elapsed = time.perf_counter() - started
    # About 26 ms on the development machine; the bound leaves room for CI.
    assert 0.002 < elapsed < 0.5
