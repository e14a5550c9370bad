"""SIP logins: who may connect as a terminal, and with which settings.

Layer: `sip2server`. Uses `ils.secrets` for password hashes; never logs passwords.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Iterable

from ils.secrets import hash_secret, verify_secret
from sip2server.config import AccountConfig


class AccountBook:
    """The SIP accounts of one server configuration, looked up by login."""

    def __init__(self, accounts: Iterable[AccountConfig]) -> None:
        self._by_login = {account.login: account for account in accounts}

    def __len__(self) -> int:
        return len(self._by_login)

    def __iter__(self) -> Iterable[AccountConfig]:
        return iter(self._by_login.values())

    def authenticate(self, login: str, password: str) -> AccountConfig | None:
        """The account for this login if the password is right, else None.

        An unknown login costs the same hash as a known one, so that response
        time does not tell a caller which logins exist.
        """
        account = self._by_login.get(login)
        if account is None:
            verify_secret(password, _decoy_hash())
            return None
        if account.password_hash is not None:
            ok = verify_secret(password, account.password_hash)
        else:
            # A plain password costs a hash too, so that timing does not tell a
            # plain account from an unknown login.
            verify_secret(password, _decoy_hash())
            expected = account.password or ""
            ok = hmac.compare_digest(password.encode(), expected.encode())
        return account if ok else None


@functools.cache
def _decoy_hash() -> str:
    # A hash of a random string nobody knows, checked against for unknown logins.
    return hash_secret(secrets.token_hex(16))
