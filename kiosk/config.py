"""The kiosk's configuration: a TOML file read into typed, validated objects.

Layer: `kiosk`. Imports the standard library and pydantic; never `ils`.

Every problem is a `KioskConfigError` naming the file, the key and what is wrong,
so a library's systems staff can fix a file without reading code. The commented
example `config/kiosk.toml` documents every option.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

_Code = Annotated[
    str, StringConstraints(min_length=1, max_length=32, strip_whitespace=True)
]
_Seconds = Annotated[float, Field(gt=0, le=86_400)]

# The languages the kiosk ships catalogues for (kiosk/locale/<code>).
SHIPPED_LANGUAGES = ("en", "fr", "de")


class KioskConfigError(ValueError):
    """A kiosk configuration file that cannot be used, with where and why."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = [f"{self.path}: {key}: {problem}" for key, problem in problems]
        super().__init__("\n".join(lines))


class _Strict(BaseModel):
    # strict: "6001" is not a port and "yes" is not a boolean (TOML has types).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class KioskSection(_Strict):
    """Who this kiosk is and where it stands."""

    name: _Code = "kiosk"
    institution: _Code
    # The branch code sent as the location in 93 and 09 (CP/AP).
    branch: _Code
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    default_language: str = "en"
    # Patron names and barcodes are masked in logs unless this is false.
    mask_patron_data: bool = True
    fullscreen: bool = True
    # Staff cards open the staff screen when scanned on the attract screen.
    staff_cards: list[str] = Field(default_factory=list)
    # A staff code typed on the identify keypad opens it too; store only its
    # hash, made with `ils kiosk --hash-staff-code`.
    staff_code_hash: str = ""

    @field_validator("languages")
    @classmethod
    def _shipped(cls, value: list[str]) -> list[str]:
        unknown = [code for code in value if code not in SHIPPED_LANGUAGES]
        if unknown:
            raise ValueError(
                f"no catalogue for {unknown[0]!r}; choose from "
                + ", ".join(SHIPPED_LANGUAGES)
            )
        return value

    @field_validator("staff_code_hash")
    @classmethod
    def _hash_form(cls, value: str) -> str:
        if value and not re.fullmatch(r"scrypt\$[0-9a-f]{32}\$[0-9a-f]{64}", value):
            raise ValueError(
                "not a staff code hash; make one with `ils kiosk --hash-staff-code`"
            )
        return value

    @model_validator(mode="after")
    def _default_offered(self) -> Self:
        if self.default_language not in self.languages:
            raise ValueError(
                f"default_language {self.default_language!r} is not in languages"
            )
        return self


class ServerSection(_Strict):
    """How to reach the SIP2 server and how patient to be with it."""

    host: Annotated[str, StringConstraints(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 6001
    # Seconds to wait for a reply before the request fails and the link is reset.
    timeout: _Seconds = 10.0
    # Seconds between status requests (99) while nothing else is sent.
    status_interval: _Seconds = 60.0
    # Reconnect delays double from the first to the last.
    reconnect_min: _Seconds = 1.0
    reconnect_max: _Seconds = 60.0
    error_detection: bool = True
    encoding: str = "utf-8"
    # Speak TLS to a TLS listener of the server; its certificate must name
    # `host` and be signed by a certificate in `ca_file` (the system's when
    # empty).
    tls: bool = False
    ca_file: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min is larger than reconnect_max")
        return self


class AccountSection(_Strict):
    """The SIP account this kiosk logs in with (93)."""

    login: _Code
    password: str
    terminal_password: str = ""


class TimeoutSection(_Strict):
    """How long a patron may stay idle, and how long a session may last."""

    # Seconds without a touch, key or scan before the session ends.
    idle: _Seconds = 60.0
    # The last this-many seconds of `idle` show a countdown.
    warning: _Seconds = 15.0
    # No session lasts longer than this, busy or not.
    session_max: _Seconds = 600.0

    @model_validator(mode="after")
    def _warning_fits(self) -> Self:
        if self.warning >= self.idle:
            raise ValueError("warning must be shorter than idle")
        return self


class PatronSection(_Strict):
    """Identifying patrons."""

    pin_required: bool = True
    # Wrong PINs allowed in one session before "please see staff".
    pin_max_tries: Annotated[int, Field(ge=1, le=10)] = 3
    # Regular expressions a card and an item barcode must match (empty: any),
    # so an item scanned at the card prompt is refused at once.
    card_pattern: str = ""
    item_pattern: str = ""

    @field_validator("card_pattern", "item_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a regular expression: {error}") from None
        return value


class ServicesSection(_Strict):
    """Which services this kiosk offers patrons."""

    borrow: bool = True
    returns: bool = True
    renew: bool = True
    account: bool = True
    print_receipt: bool = True
    email_receipt: bool = False


class OfflineSection(_Strict):
    """What the kiosk may do while the server cannot be reached."""

    enabled: bool = False
    returns: bool = True
    checkouts: bool = False
    # Offline checkouts one patron may make before being sent to the desk.
    max_checkouts_per_patron: Annotated[int, Field(ge=0, le=100)] = 3
    journal: Annotated[str, StringConstraints(min_length=1)] = (
        "var/kiosk-journal.sqlite3"
    )


class DevicesSection(_Strict):
    """Which devices are attached; empty strings mean none."""

    # Keystrokes ending in Enter on any screen count as a scan.
    keyboard_wedge: bool = True
    scanner: str = ""
    rfid: str = ""
    # "file:PATH" (an ESC/POS spool file), "serial:DEVICE",
    # "network:HOST[:PORT]" or "dummy", printed through drivers/printer.
    printer: str = ""

    @field_validator("rfid")
    @classmethod
    def _rfid_form(cls, value: str) -> str:
        kind, _, url = value.partition(":")
        if value and (kind not in {"feig", "3m810"} or not url):
            raise ValueError(f"{value!r} is not feig:URL or 3m810:URL")
        return value

    @field_validator("printer")
    @classmethod
    def _printer_form(cls, value: str) -> str:
        kind, _, rest = value.partition(":")
        good = (kind in {"file", "serial", "network"} and rest) or value == "dummy"
        if kind == "network" and rest:
            port = rest.partition(":")[2]
            good = not port or (port.isdigit() and 0 < int(port) < 65536)
        if value and not good:
            raise ValueError(
                f"{value!r} is not file:PATH, serial:DEVICE, "
                "network:HOST[:PORT] or dummy"
            )
        return value


class DisplaySection(_Strict):
    """The screen."""

    large_text: bool = False
    high_contrast: bool = False
    width: Annotated[int, Field(ge=320, le=7680)] = 800
    height: Annotated[int, Field(ge=240, le=4320)] = 480


class AudioSection(_Strict):
    """Sounds for success, failure and warning."""

    enabled: bool = True
    volume: Annotated[float, Field(ge=0, le=1)] = 0.7


class MessagesSection(_Strict):
    """Where the site's own wording for refusals is (empty: the shipped one)."""

    catalogue: str = ""


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# A plain address (RFC 5321 Mailbox, ASCII only): no display name, no spaces.
MAIL_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+"
)


class EmailSection(_Strict):
    """Email receipts: the SMTP server the kiosk hands them to (no host: none)."""

    # Empty: the kiosk sends no mail at all and never offers an email receipt.
    host: Annotated[str, StringConstraints(strip_whitespace=True)] = ""
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    # "required": STARTTLS or no mail; "if offered": TLS when the server offers
    # it; "off": never (only for a relay on this machine or a trusted network).
    starttls: Literal["required", "if offered", "off"] = "required"
    # A login (AUTH) when set; it needs TLS unless the host is loopback.
    username: str = ""
    password: str = ""
    # The From address (required with a host); the kiosk's name is its label.
    sender: str = ""
    # The name sent in EHLO (empty: the sender's domain).
    helo: str = ""
    # Seconds to connect and for each reply of the server.
    timeout: _Seconds = 30.0
    # A PEM file of CA certificates to trust instead of the system's.
    ca_file: str = ""

    @field_validator("host", "helo")
    @classmethod
    def _one_word(cls, value: str) -> str:
        if any(character.isspace() for character in value):
            raise ValueError(f"{value!r} has spaces in it")
        return value

    @field_validator("sender")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and not MAIL_ADDRESS.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a plain address like library@example.org"
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if not self.host:
            return self
        if not self.sender:
            raise ValueError("sender is required when host is set")
        if self.password and not self.username:
            raise ValueError("password is set but username is not")
        if (
            self.username
            and self.starttls != "required"
            and self.host not in _LOOPBACK_HOSTS
        ):
            raise ValueError(
                'a login needs starttls = "required" (the password would cross '
                "the network in clear)"
            )
        return self


class KioskConfig(_Strict):
    """A whole kiosk configuration file."""

    kiosk: KioskSection
    server: ServerSection = Field(default_factory=ServerSection)
    account: AccountSection
    timeouts: TimeoutSection = Field(default_factory=TimeoutSection)
    patron: PatronSection = Field(default_factory=PatronSection)
    services: ServicesSection = Field(default_factory=ServicesSection)
    offline: OfflineSection = Field(default_factory=OfflineSection)
    devices: DevicesSection = Field(default_factory=DevicesSection)
    display: DisplaySection = Field(default_factory=DisplaySection)
    audio: AudioSection = Field(default_factory=AudioSection)
    messages: MessagesSection = Field(default_factory=MessagesSection)
    email: EmailSection = Field(default_factory=EmailSection)


def _key(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        else:
            parts.append(part)
    return ".".join(parts) or "(top level)"


def parse_config(data: dict[str, Any], path: Path | str) -> KioskConfig:
    """Validate an already-parsed TOML document.

    Raises:
        KioskConfigError: naming each key that is missing, unknown or invalid.
    """
    try:
        return KioskConfig.model_validate(data)
    except ValidationError as error:
        problems = [
            (_key(tuple(item["loc"])), str(item["msg"]).removeprefix("Value error, "))
            for item in error.errors()
        ]
        raise KioskConfigError(path, problems) from None


def load_config(path: Path | str) -> KioskConfig:
    """Read and validate a kiosk configuration file.

    Raises:
        KioskConfigError: the file is missing, is not TOML, or has invalid keys.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise KioskConfigError(path, [("(file)", "no such file")]) from None
    except tomllib.TOMLDecodeError as error:
        raise KioskConfigError(path, [("(syntax)", str(error))]) from None
    config = parse_config(data, path)
    problems = _missing_files(config)
    if problems:
        raise KioskConfigError(path, problems)
    return config


def _missing_files(config: KioskConfig) -> list[tuple[str, str]]:
    """Files the configuration names that are not there (relative paths are
    from the working directory), checked before any window opens."""
    problems: list[tuple[str, str]] = []
    for key, name in (
        ("devices.scanner", config.devices.scanner),
        ("messages.catalogue", config.messages.catalogue),
        ("email.ca_file", config.email.ca_file),
        ("server.ca_file", config.server.ca_file),
    ):
        if name and not Path(name).is_file():
            problems.append((key, f"no such file {name!r}"))
    folders = []
    if config.offline.enabled:
        folders.append(("offline.journal", config.offline.journal))
    kind, _, rest = config.devices.printer.partition(":")
    if kind == "file":
        folders.append(("devices.printer", rest))
    for key, name in folders:
        folder = Path(name).parent
        if not folder.is_dir():
            problems.append(
                (key, f"the folder {str(folder)!r} does not exist; create it first")
            )
    return problems


def hash_staff_code(code: str) -> str:
    """The stored form of a staff code: `scrypt$<salt>$<hash>`, all hex."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(code.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def staff_code_matches(code: str, stored: str) -> bool:
    """Whether `code` is the staff code whose hash is `stored` (False when unset)."""
    if not stored:
        return False
    _, salt, expected = stored.split("$")
    digest = hashlib.scrypt(
        code.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1, dklen=32
    )
    return hmac.compare_digest(digest.hex(), expected)
