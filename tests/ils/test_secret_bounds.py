"""Stored hashes ils.secrets cannot verify: named by `hash_problem`, and never
an error from `verify_secret` (second adversarial trial of the server, F10)."""

from __future__ import annotations

from ils.secrets import hash_problem, hash_secret, verify_secret

# n = 2**18 with r = 8 needs 256 MiB and a little more: past the limit.
TOO_MUCH_MEMORY = "scrypt$262144$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA"


def test_a_hash_made_here_has_no_problem() -> None:
    """What hash_secret makes, hash_problem accepts."""
    assert hash_problem(hash_secret("kiosk-secret")) is None


def test_a_hash_past_the_memory_bound_is_named_and_never_matches() -> None:
    """A hash scrypt would refuse for memory is a problem, and verifies as False
    instead of raising hashlib's ValueError."""
    assert "256 MiB" in str(hash_problem(TOO_MUCH_MEMORY))
    assert verify_secret("anything", TOO_MUCH_MEMORY) is False


def test_each_kind_of_unusable_hash_is_named() -> None:
    """The scheme, the numbers, their bounds and the salt are each named."""
    assert "not a scrypt$n$r$p$salt$hash" in str(hash_problem("plain"))
    assert "not whole numbers" in str(hash_problem("scrypt$x$8$1$AAAA$AAAA"))
    assert "its n (3)" in str(hash_problem("scrypt$3$8$1$AAAA$AAAA"))
    assert "p (17)" in str(hash_problem("scrypt$16384$8$17$AAAA$AAAA"))
    assert "salt or hash" in str(hash_problem("scrypt$16384$8$1$$AAAA"))
