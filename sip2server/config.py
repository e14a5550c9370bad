"""The SIP2 server's configuration: a TOML file read into typed, validated objects.

Layer: `sip2server`. Imports the standard library, pydantic,
`sip2server.endpoint_text` and the configuration's own section modules
(`sip2server.account_config`, `sip2server.listener_config`); never imports
Twisted or `ils`.

Every problem is reported as a `ConfigError` naming the file, the key and what is
wrong with it, so an operator can fix a file without reading code. The commented
example in `config/sip2server.toml` documents every option. This module reads
the file, checks the whole of it (names unique, listeners that do not clash,
certificates some listener asks for) and names each problem's key; the
sections' own models live in the two modules above and are re-exported here.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Self

from pydantic import Field, ValidationError, field_validator, model_validator

from sip2server.account_config import (
    _OWN_KEYS,
    MESSAGE_NAMES,
    AccountConfig,
    ErrorDetection,
    SubjectKey,
    Terminator,
    _Strict,
    fold_value,
    normal_fingerprint,
    parse_subject,
    unsendable,
)
from sip2server.endpoint_text import clashes
from sip2server.listener_config import (
    DEFAULT_LISTEN,
    MAX_TIMEOUT,
    DatabaseSection,
    ListenerConfig,
    MetricsSection,
    ServerSection,
    TlsSettings,
)

__all__ = [
    "DEFAULT_LISTEN",
    "MAX_TIMEOUT",
    "MESSAGE_NAMES",
    "AccountConfig",
    "ConfigError",
    "DatabaseSection",
    "ErrorDetection",
    "ListenerConfig",
    "MetricsSection",
    "ServerConfig",
    "ServerSection",
    "SubjectKey",
    "Terminator",
    "TlsSettings",
    "endpoint_clashes",
    "fold_value",
    "load_config",
    "location_problems",
    "missing_tls_files",
    "normal_fingerprint",
    "parse_config",
    "parse_subject",
    "socket_activation_warnings",
    "transaction_log_problem",
    "unseen_certificate_problems",
    "unsendable",
]


class ConfigError(ValueError):
    """A configuration file that cannot be used, with where and why."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]) -> None:
        self.path = Path(path)
        self.problems = problems
        # A problem of the whole file (not TOML at all) has no key.
        lines = [
            f"{self.path}: {key}: {problem}" if key else f"{self.path}: {problem}"
            for key, problem in problems
        ]
        super().__init__("\n".join(lines))


class ServerConfig(_Strict):
    """A whole server configuration file."""

    server: ServerSection = Field(default_factory=ServerSection)
    listeners: list[ListenerConfig] = Field(default_factory=list)
    metrics: MetricsSection = Field(default_factory=MetricsSection)
    database: DatabaseSection
    # [institution.CODE]: account settings shared by every account of that
    # institution; an account's own value wins. Merged before validation.
    institution: dict[str, dict[str, Any]] = Field(default_factory=dict)
    accounts: list[AccountConfig] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _institution_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = data.get("institution") or {}
        accounts = data.get("accounts")
        if not isinstance(defaults, dict) or not isinstance(accounts, list):
            return data
        merged = []
        for account in accounts:
            shared = (
                defaults.get(account.get("institution"))
                if isinstance(account, dict)
                else None
            )
            merged.append(
                _merge_under(shared, account) if isinstance(shared, dict) else account
            )
        return {**data, "accounts": merged}

    @field_validator("institution")
    @classmethod
    def _known_default_keys(
        cls, value: dict[str, dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        allowed = set(AccountConfig.model_fields) - _OWN_KEYS
        for code, table in value.items():
            for key in table:
                if key not in allowed:
                    raise ValueError(
                        f"{code}.{key}: not an account setting an institution "
                        "can give (login, passwords, institution and "
                        "certificates are each account's own)"
                    )
        return value

    @model_validator(mode="after")
    def _unique_logins(self) -> Self:
        logins = [account.login for account in self.accounts]
        duplicates = sorted({login for login in logins if logins.count(login) > 1})
        if duplicates:
            raise ValueError(f"login {duplicates[0]!r} is defined more than once")
        for index, listener in enumerate(self.listeners):
            unknown = sorted(set(listener.accounts or ()) - set(logins))
            if unknown:
                raise ValueError(
                    f"listeners[{index}].accounts: {unknown[0]!r} is not the login "
                    "of any [[accounts]] table"
                )
        return self

    def all_listeners(self) -> list[tuple[str, ListenerConfig]]:
        """Every listener with the configuration key it comes from, in order."""
        plain = self.server.listen
        if plain is None and not self.listeners:
            plain = [DEFAULT_LISTEN]
        found = [
            (f"server.listen[{index}]", ListenerConfig(endpoint=endpoint))
            for index, endpoint in enumerate(plain or ())
        ]
        found += [
            (f"listeners[{index}]", listener)
            for index, listener in enumerate(self.listeners)
        ]
        return found


def missing_tls_files(config: ServerConfig) -> list[str]:
    """Each listener's TLS file that does not exist, by its key (no file is read)."""
    problems = []
    for key, listener in config.all_listeners():
        tls = listener.tls
        if tls is None:
            continue
        for name in ("certificate", "private_key", "client_ca"):
            path = getattr(tls, name)
            if path is not None and not path.is_file():
                problems.append(f"{key}.tls.{name}: no such file {path}")
    return problems


def socket_activation_warnings(config: ServerConfig) -> list[str]:
    """What to check by hand when systemd's socket sits beside other listeners.

    A `systemd:` listener's port is in the .socket unit, not in this file, so
    a clash cannot be proved here; each listener that opens a port of its own
    is named, with the key that opens it.
    """
    found = config.all_listeners()
    if not any(listener.endpoint.startswith("systemd:") for _, listener in found):
        return []
    warnings = []
    if config.server.listen:
        warnings.append(
            "server.listen: with a systemd: listener the socket unit opens the "
            "SIP2 port; [server] listen opens "
            + ", ".join(config.server.listen)
            + " as well, and if the socket unit has the same port the start "
            "fails with 'Address already in use'; leave [server] listen out "
            "unless it is another port"
        )
    for key, listener in found:
        if key.startswith("listeners[") and not listener.endpoint.startswith(
            "systemd:"
        ):
            warnings.append(
                f"{key}.endpoint: {listener.endpoint} opens its own port beside "
                "the socket unit's; make sure no ListenStream= of "
                "ils-sip2server.socket uses it"
            )
    return warnings


# The text in a setting that `ils serve` replaces by its instance name.
_INSTANCE_FIELD = "{instance}"


def endpoint_clashes(config: ServerConfig) -> list[tuple[str, str]]:
    """Listeners (and metrics.listen) that would bind the same port twice.

    Each is named by its key with the earlier key it collides with; `ils serve`
    would stop with "Address already in use". Port 0, systemd: sockets and
    endpoints with {instance} are not compared.
    """
    found = [
        (f"{key}.endpoint" if key.startswith("listeners[") else key, settings.endpoint)
        for key, settings in config.all_listeners()
    ]
    if config.metrics.listen is not None:
        found.append(("metrics.listen", config.metrics.listen))
    return clashes(
        [(key, endpoint) for key, endpoint in found if _INSTANCE_FIELD not in endpoint]
    )


def transaction_log_problem(config: ServerConfig) -> str | None:
    """Why `server.transaction_log` cannot be opened as a file, or None.

    The server creates no folders: the log's folder must exist (and be the
    server user's to write). A path with {instance} is checked as far as the
    part without it.
    """
    path = config.server.transaction_log
    if path is None:
        return None
    folder = path.parent
    if _INSTANCE_FIELD not in str(folder):
        if not folder.exists():
            return (
                f"the folder {folder} does not exist; the server creates none: "
                "make it, writable by the server's user"
            )
        if not folder.is_dir():
            return f"{folder} is not a folder"
    if _INSTANCE_FIELD not in str(path) and path.is_dir():
        return f"{path} is a folder; name a file in it, such as {path}/transactions.log"
    return None


def location_problems(
    config: ServerConfig, branch_institutions: dict[str, str]
) -> list[str]:
    """Accounts whose location is a branch of another institution.

    `branch_institutions` maps each branch code in the database to its
    institution's code. An account's location must be a branch of its own
    institution or of one in its policy's serves_institutions; otherwise its
    returns would be taken in at another library's branch. Branches the
    database lacks are reported by the caller.
    """
    problems = []
    for index, account in enumerate(config.accounts):
        owner = branch_institutions.get(account.location)
        allowed = {account.institution, *account.policy.serves_institutions}
        if owner is None or owner in allowed:
            continue
        problems.append(
            f"accounts[{index}] ({account.login}): location {account.location!r} "
            f"is a branch of {owner!r}, not of {account.institution!r}"
            + (
                " or of its policy.serves_institutions"
                if account.policy.serves_institutions
                else ""
            )
            + "; give a branch of the account's own institution"
        )
    return problems


def _merge_under(defaults: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """An account's keys over its institution's; tables (policy) merge key by key."""
    merged = dict(defaults)
    for key, value in own.items():
        below = merged.get(key)
        if isinstance(value, dict) and isinstance(below, dict):
            merged[key] = _merge_under(below, value)
        else:
            merged[key] = value
    return merged


def _key(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        else:
            parts.append(part)
    return ".".join(parts) or "(top level)"


def parse_config(data: dict[str, Any], path: Path | str) -> ServerConfig:
    """Validate an already-parsed TOML document.

    Raises:
        ConfigError: naming each key that is missing, unknown or invalid.
    """
    inherited = _institution_problems(data)
    try:
        config = ServerConfig.model_validate(data)
    except ValidationError as error:
        problems = [(key, problem) for key, _, problem in inherited]
        for item in error.errors():
            key, problem = _key(tuple(item["loc"])), _message(item)
            # A mistake in [institution.X] shows in each of its accounts too;
            # it is reported once, under the institution's own key.
            if not any(
                key.endswith(f"].{sub}") and problem == said and key != sub
                for _, sub, said in inherited
            ):
                problems.append((key, problem))
        raise ConfigError(path, problems) from None
    if inherited:
        raise ConfigError(path, [(key, problem) for key, _, problem in inherited])
    unseen = unseen_certificate_problems(config) + endpoint_clashes(config)
    if unseen:
        raise ConfigError(path, unseen)
    return config


def unseen_certificate_problems(config: ServerConfig) -> list[tuple[str, str]]:
    """Accounts tied to certificates that no listener they may use asks for.

    Only a listener with `tls.client_ca` asks terminals for a certificate; an
    account tied to certificates but admitted only on others could never log
    in. Each is named by its key, with the problem.
    """
    listeners = [listener for _, listener in config.all_listeners()]
    reserved = {login for listener in listeners for login in listener.accounts or ()}
    problems = []
    for index, account in enumerate(config.accounts):
        if not account.tied_to_certificates:
            continue
        admitting = [
            listener
            for listener in listeners
            if (
                account.login in listener.accounts
                if listener.accounts is not None
                else account.login not in reserved
            )
        ]
        if any(
            listener.tls is not None and listener.tls.client_ca is not None
            for listener in admitting
        ):
            continue
        key = (
            "certificate_fingerprints"
            if account.certificate_fingerprints
            else "certificate_subjects"
        )
        problems.append(
            (
                f"accounts[{index}].{key}",
                f"{account.login!r} is tied to client certificates, but no "
                "listener it may log in through asks terminals for one; give "
                "such a listener a [listeners.tls] client_ca",
            )
        )
    return problems


def _message(item: Any) -> str:
    return str(item["msg"]).removeprefix("Value error, ")


def _institution_problems(data: Any) -> list[tuple[str, str, str]]:
    """Mistakes in [institution.CODE] tables: (key, key within an account, problem).

    Each table is checked as the account settings it gives, alone, so that its
    mistake is named by the table's key, not by each account that inherits it.
    """
    tables = data.get("institution") if isinstance(data, dict) else None
    if not isinstance(tables, dict):
        return []
    found = []
    for code, table in tables.items():
        if not isinstance(table, dict):
            continue
        # Keys an institution may not give are reported by _known_default_keys.
        settable = set(AccountConfig.model_fields) - _OWN_KEYS
        given = {key: value for key, value in table.items() if key in settable}
        probe = {
            **given,
            "login": "x",
            "password": "x",
            "institution": "x",
            "location": "x",
        }
        try:
            AccountConfig.model_validate(probe)
        except ValidationError as error:
            for item in error.errors():
                location = tuple(item["loc"])
                if location and location[0] in given:
                    sub = _key(location)
                    found.append((f"institution.{code}.{sub}", sub, _message(item)))
    return found


def load_config(path: Path | str) -> ServerConfig:
    """Read and validate a configuration file.

    Raises:
        ConfigError: the file is missing, is not TOML, or has invalid keys.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(path, [("(file)", "no such file")]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [("", f"not a valid TOML file ({error})")]) from None
    except RecursionError:
        # tomllib reads nested arrays and tables by recursion, and gives up
        # with Python's own error past its depth.
        raise ConfigError(
            path, [("", "not a valid TOML file (arrays or tables nested too deeply)")]
        ) from None
    try:
        return parse_config(data, path)
    except RecursionError:
        raise ConfigError(
            path, [("", "not a usable configuration (values nested too deeply)")]
        ) from None
