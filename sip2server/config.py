"""The SIP2 server's configuration: a TOML file read into typed, validated objects.

Layer: `sip2server`. Imports the standard library, pydantic and the codec's
output-setting enums.

Every problem is reported as a `ConfigError` naming the file, the key and what is
wrong with it, so an operator can fix a file without reading code. The commented
example in `config/sip2server.toml` documents every option.
"""

from __future__ import annotations

import enum
import tomllib
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from sip2server.protocol import (
    DelimiterPolicy,
    DueDateStyle,
    FieldOrder,
    encoding_problem,
)

DEFAULT_LISTEN = "tcp:6001:interface=127.0.0.1"


class ConfigError(ValueError):
    """A configuration file that cannot be used, with where and why."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = [f"{self.path}: {key}: {problem}" for key, problem in problems]
        super().__init__("\n".join(lines))


class Terminator(enum.Enum):
    """How a reply frame ends: as the spec says (CR), CRLF, or as the client's did."""

    CR = "cr"
    CRLF = "crlf"
    MIRROR = "mirror"


class ErrorDetection(enum.Enum):
    """Whether replies carry AY/AZ: never, as the request did, or always required."""

    OFF = "off"
    AUTO = "auto"
    REQUIRED = "required"


_Code = Annotated[
    str, StringConstraints(min_length=1, max_length=32, strip_whitespace=True)
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountConfig(_Strict):
    """One SIP login: a terminal (kiosk, gate, sorter) or a group of them."""

    login: _Code
    # Exactly one of the two. A plain password is for demos and tests only; use
    # `ils hash-password` output for anything real.
    password: str | None = None
    password_hash: str | None = None
    institution: _Code
    # The branch code where this terminal's transactions happen (checkout branch,
    # return branch) unless a request names another with AP or CP.
    location: _Code
    terminator: Terminator = Terminator.MIRROR
    error_detection: ErrorDetection = ErrorDetection.AUTO
    # Any Python codec that writes ASCII as single bytes; "ascii" transliterates.
    encoding: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)] = (
        "utf-8"
    )
    # What a `|` inside a value becomes in replies; control characters are always
    # spaces.
    delimiter_in_value: DelimiterPolicy = DelimiterPolicy.SPACE
    field_order: FieldOrder = FieldOrder.SPEC
    due_date_format: DueDateStyle = DueDateStyle.SIP
    patron_pin_required: bool = False

    @field_validator("encoding")
    @classmethod
    def _usable_encoding(cls, value: str) -> str:
        problem = encoding_problem(value)
        if problem is not None:
            raise ValueError(
                f"{problem}; use utf-8, cp850, iso-8859-1, ascii or another "
                "ASCII-compatible Python codec name"
            )
        return value

    @model_validator(mode="after")
    def _one_password(self) -> Self:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError("give exactly one of 'password' or 'password_hash'")
        return self


class ServerSection(_Strict):
    """Listeners and process-wide settings."""

    listen: list[str] = Field(default_factory=lambda: [DEFAULT_LISTEN], min_length=1)
    # Threads that run database work, so a slow query never stalls other terminals.
    threads: Annotated[int, Field(ge=1, le=200)] = 10
    # Patron names and barcodes are masked in logs unless this is set to false.
    mask_patron_data: bool = True
    log_level: Annotated[
        str, StringConstraints(pattern="^(debug|info|warn|error)$")
    ] = "info"
    # Largest accepted frame in bytes; longer input is answered with 96.
    max_frame_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 8192
    # Seconds without a byte from a terminal before its connection is closed;
    # 0 keeps idle connections open. Kiosks send 99 every few minutes.
    idle_timeout: Annotated[float, Field(ge=0)] = 0


class DatabaseSection(_Strict):
    """Where the core database is."""

    url: Annotated[str, StringConstraints(min_length=1)]
    # SQLite only: seconds a request waits for another writer before it is
    # refused as "unavailable"; keep it below the terminals' own timeout.
    busy_timeout: Annotated[float, Field(gt=0, le=300)] = 5.0


class ServerConfig(_Strict):
    """A whole server configuration file."""

    server: ServerSection = Field(default_factory=ServerSection)
    database: DatabaseSection
    accounts: list[AccountConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_logins(self) -> Self:
        logins = [account.login for account in self.accounts]
        duplicates = sorted({login for login in logins if logins.count(login) > 1})
        if duplicates:
            raise ValueError(f"login {duplicates[0]!r} is defined more than once")
        return self


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
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as error:
        problems = [
            (_key(tuple(item["loc"])), str(item["msg"]).removeprefix("Value error, "))
            for item in error.errors()
        ]
        raise ConfigError(path, problems) from None


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
        raise ConfigError(path, [("(syntax)", str(error))]) from None
    return parse_config(data, path)
