"""The gate's configuration: a TOML file read into typed, validated objects.

Layer: `drivers`. Imports the standard library and pydantic; never `ils`.

Every problem is a `GateConfigError` naming the file, the key and what is wrong,
so an operator can fix the file without reading code. `config/gate.toml` is the
commented example of every option.
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


class GateConfigError(ValueError):
    """A gate configuration file that cannot be used, with where and why."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]) -> None:
        self.path = Path(path)
        self.problems = problems
        lines = [f"{self.path}: {key}: {problem}" for key, problem in problems]
        super().__init__("\n".join(lines))


class SecurityMode(enum.Enum):
    """Where the tag keeps its security state (ISO 28560-1 allows either)."""

    AFI = "afi"
    EAS = "eas"


class UnknownTag(enum.Enum):
    """What to do with a tag whose security state cannot be read."""

    ALARM = "alarm"
    LET_THROUGH = "pass"


class ReaderDriver(enum.Enum):
    """The reader protocols the drivers speak ("3m" is read as "3m810")."""

    FEIG = "feig"
    M810 = "3m810"


class SerialLine(enum.Enum):
    """A modem-control output line of a serial port, by pyserial's name."""

    DTR = "dtr"
    RTS = "rts"


class InputLine(enum.Enum):
    """A modem-status input line of a serial port, by pyserial's name."""

    CTS = "cts"
    DSR = "dsr"
    RI = "ri"
    CD = "cd"


class AlarmKind(enum.Enum):
    """How the gate sounds its alarm."""

    SERIAL = "serial"
    COMMAND = "command"
    NONE = "none"


_Text = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
_Byte = Annotated[int, Field(ge=0, le=0xFF)]
_Seconds = Annotated[float, Field(gt=0, le=3600)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateSection(_Strict):
    """The gate itself: its name, timing and what reaches the log."""

    name: _Text = "gate"
    poll_interval: Annotated[float, Field(ge=0.01, le=60)] = 0.25
    pass_gap: Annotated[float, Field(ge=0, le=600)] = 3.0
    report_interval: Annotated[float, Field(ge=0)] = 900.0
    mask_item_ids: bool = False
    log_level: Annotated[
        str, StringConstraints(pattern="^(debug|info|warn|error)$")
    ] = "info"


class ReaderSection(_Strict):
    """The RFID reader: protocol, port and how to recover when it is lost."""

    driver: ReaderDriver
    port: _Text
    baudrate: Annotated[int, Field(ge=300, le=4_000_000)] | None = None
    timeout: _Seconds = 1.0
    reconnect_min: _Seconds = 1.0
    reconnect_max: _Seconds = 30.0
    first_block: Annotated[int, Field(ge=0, le=255)] = 0
    block_count: Annotated[int, Field(ge=1, le=64)] = 8

    @field_validator("driver", mode="before")
    @classmethod
    def _driver_alias(cls, value: object) -> object:
        # The simulator's --protocol calls the 3M reader "3m"; accept it here too.
        return "3m810" if value == "3m" else value

    @model_validator(mode="after")
    def _ordered_backoff(self) -> Self:
        if self.reconnect_max < self.reconnect_min:
            raise ValueError("reconnect_max must not be below reconnect_min")
        return self


class SecuritySection(_Strict):
    """How a tag says it is secured, and what an unreadable tag does."""

    mode: SecurityMode = SecurityMode.AFI
    secured_afi: _Byte = 0x07
    unsecured_afi: _Byte = 0xC2
    unknown: UnknownTag = UnknownTag.ALARM

    @model_validator(mode="after")
    def _distinct_afi(self) -> Self:
        if self.secured_afi == self.unsecured_afi:
            raise ValueError("secured_afi and unsecured_afi must differ")
        return self


class AlarmSection(_Strict):
    """The alarm output: a relay on a serial line, or a command."""

    output: AlarmKind = AlarmKind.NONE
    port: _Text | None = None
    line: SerialLine = SerialLine.RTS
    hold_ms: Annotated[int, Field(ge=10, le=60_000)] = 2000
    command: list[_Text] = Field(default_factory=list)
    command_timeout: _Seconds = 10.0

    @model_validator(mode="after")
    def _output_has_its_settings(self) -> Self:
        if self.output is AlarmKind.SERIAL and self.port is None:
            raise ValueError("output = 'serial' needs 'port'")
        if self.output is AlarmKind.COMMAND and not self.command:
            raise ValueError(
                "output = 'command' needs 'command', a list such as "
                '["/usr/local/bin/siren", "3"]'
            )
        return self


class SipSection(_Strict):
    """The SIP2 server asked for an alarmed item's title and status (17)."""

    host: _Text = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 6001
    login: _Text
    password: Annotated[str, StringConstraints(min_length=1)]
    institution: _Text
    location: _Text | None = None
    terminal_password: str | None = None
    timeout: _Seconds = 3.0
    error_detection: bool = True
    encoding: _Text = "utf-8"
    retry_after: Annotated[float, Field(ge=0, le=3600)] = 10.0


class PeopleCounterSection(_Strict):
    """A people counter's pulse output wired to a serial input line."""

    port: _Text
    line: InputLine = InputLine.CTS
    poll_interval: Annotated[float, Field(ge=0.005, le=10)] = 0.02


class GateConfig(_Strict):
    """A whole gate configuration file."""

    gate: GateSection = Field(default_factory=GateSection)
    reader: ReaderSection
    security: SecuritySection = Field(default_factory=SecuritySection)
    alarm: AlarmSection = Field(default_factory=AlarmSection)
    sip: SipSection | None = None
    people_counter: PeopleCounterSection | None = None

    @model_validator(mode="after")
    def _reader_can_read_the_security(self) -> Self:
        if (
            self.reader.driver is ReaderDriver.M810
            and self.security.mode is SecurityMode.EAS
        ):
            raise ValueError(
                "security.mode = 'eas' needs a reader with EAS commands; the 3M 810 "
                "protocol has none, so use mode = 'afi' with reader.driver = '3m810'"
            )
        return self


def _key(location: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in location:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        else:
            parts.append(part)
    return ".".join(parts) or "(top level)"


def parse_gate_config(data: dict[str, Any], path: Path | str) -> GateConfig:
    """Validate an already-parsed TOML document.

    Raises:
        GateConfigError: naming each key that is missing, unknown or invalid.
    """
    try:
        return GateConfig.model_validate(data)
    except ValidationError as error:
        problems = [
            (_key(tuple(item["loc"])), str(item["msg"]).removeprefix("Value error, "))
            for item in error.errors()
        ]
        raise GateConfigError(path, problems) from None


def load_gate_config(path: Path | str) -> GateConfig:
    """Read and validate a gate configuration file.

    Raises:
        GateConfigError: the file is missing, is not TOML, or has invalid keys.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise GateConfigError(path, [("(file)", "no such file")]) from None
    except IsADirectoryError:
        raise GateConfigError(path, [("(file)", "is a directory")]) from None
    except OSError as error:
        problem = f"cannot be read: {error.strerror or error}"
        raise GateConfigError(path, [("(file)", problem)]) from None
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 text (byte {error.start}: {error.reason})"
        raise GateConfigError(path, [("(file)", problem)]) from None
    except tomllib.TOMLDecodeError as error:
        raise GateConfigError(path, [("(syntax)", str(error))]) from None
    return parse_gate_config(data, path)
