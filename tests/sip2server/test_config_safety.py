"""Configurations `ils check-config` and `ils serve` refuse, each named by its key
(second adversarial trial of the server, F9 and F10): unsafe or unusable
accounts, endpoints that collide, a transaction log that cannot be a file,
absurd timeouts and TOML nested past what Python reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from click.testing import CliRunner

from ils.models import Branch, Institution
from ils.secrets import hash_secret
from sip2server.app import StartupError, start_server
from sip2server.cli import check_config, serve
from sip2server.config import (
    ConfigError,
    ServerConfig,
    load_config,
    parse_config,
    transaction_log_problem,
)
from sip2server.txlog import TransactionLog
from tests.ils.factories import build_library


def account(**settings: Any) -> dict[str, Any]:
    """One kiosk account of CITY at NORTH, with `settings` over it."""
    return {
        "login": "kiosk1",
        "password": "kiosk-secret",
        "institution": "CITY",
        "location": "NORTH",
        **settings,
    }


def config_of(
    *, accounts: list[dict[str, Any]] | None = None, **tables: Any
) -> ServerConfig:
    """A configuration of the given tables, with one account unless given."""
    data = {"database": {"url": "sqlite:///unused.sqlite3"}, **tables}
    data["accounts"] = accounts if accounts is not None else [account()]
    return parse_config(data, "site.toml")


def problems_of(**tables: Any) -> dict[str, str]:
    """The (key -> problem) a configuration of these tables is refused with."""
    with pytest.raises(ConfigError) as caught:
        config_of(**tables)
    return dict(caught.value.problems)


# -- F9: accounts that let anyone in -------------------------------------------


@pytest.mark.parametrize("key", ["certificate_fingerprints", "certificate_subjects"])
def test_an_empty_certificate_list_is_refused_at_its_key(key: str) -> None:
    """An empty list would leave the account untied while it looks tied (third
    trial): refused, naming the key."""
    problems = problems_of(accounts=[account(**{key: []})])

    assert "empty list" in problems[f"accounts[0].{key}"]


def test_an_empty_password_is_refused_at_its_key() -> None:
    """`password = ""` would admit anyone who knows the login."""
    found = problems_of(accounts=[account(password="")])

    assert ["accounts[0].password"] == list(found)
    assert "empty password" in found["accounts[0].password"]


def test_a_hash_of_the_empty_password_is_refused_at_its_key() -> None:
    """A password_hash made from "" is as open as an empty password."""
    settings = account(password_hash=hash_secret(""))
    del settings["password"]

    found = problems_of(accounts=[settings])

    assert ["accounts[0].password_hash"] == list(found)
    assert "hash of an empty password" in found["accounts[0].password_hash"]


def test_a_hash_of_a_real_password_is_accepted() -> None:
    """A hash from `ils hash-password` of a real password loads."""
    settings = account(password_hash=hash_secret("kiosk-secret"))
    del settings["password"]

    assert config_of(accounts=[settings]).accounts[0].password is None


@pytest.mark.parametrize(
    ("stored", "said"),
    [
        ("scrypt$99999999999$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAA", "its n"),
        ("scrypt$1099511627776$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAA", "its n"),
        ("scrypt$16384$8$1000000$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAA", "p (1000000)"),
        ("scrypt$262144$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAA", "256 MiB"),
        ("kiosk-secret", "not a scrypt$n$r$p$salt$hash value"),
    ],
)
def test_a_hash_no_login_could_match_is_refused(stored: str, said: str) -> None:
    """A password_hash outside what ils.secrets verifies is refused at load."""
    settings = account(password_hash=stored)
    del settings["password"]

    found = problems_of(accounts=[settings])

    assert ["accounts[0].password_hash"] == list(found)
    assert "not a usable password hash" in found["accounts[0].password_hash"]
    assert said in found["accounts[0].password_hash"]


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("login", "kiosk|1", "'|'"),
        ("login", "kiosk\x001", "U+0000"),
        ("login", "kiosk\t1", "U+0009"),
        ("password", "pass|word", "'|'"),
        ("password", "pass\x1bword", "U+001B"),
    ],
)
def test_a_login_or_password_no_terminal_can_send_is_refused(
    key: str, value: str, said: str
) -> None:
    """A `|` or a control character cannot travel in CN or CO of a 93."""
    found = problems_of(accounts=[account(**{key: value})])

    assert [f"accounts[0].{key}"] == list(found)
    assert said in found[f"accounts[0].{key}"]


async def start_refused(config: ServerConfig) -> StartupError:
    """Why the server refuses to start with `config` (one that starts is
    stopped again, so that its threads cannot outlive the test)."""
    from twisted.internet import reactor  # noqa: PLC0415 - see conftest

    try:
        running = await start_server(config, reactor)
    except StartupError as error:
        return error
    await running.stop()
    pytest.fail("the server started")


def _two_institutions(url: str) -> None:
    library = build_library(url)
    with library.database.transaction() as session:
        other = Institution(code="OTHER", name="Other Libraries", currency="GBP")
        session.add(other)
        session.flush()
        session.add(Branch(institution_id=other.id, code="OMAIN", name="Other Main"))
    library.database.dispose()


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def _account_text(**settings: str) -> str:
    lines = [f"{key} = {value!r}" for key, value in account(**settings).items()]
    return "[[accounts]]\n" + "\n".join(lines).replace("'", '"') + "\n"


def test_check_config_refuses_a_location_of_another_institution(
    sqlite_url: str, tmp_path: Path
) -> None:
    """An account of CITY placed at OTHER's branch is named by check-config."""
    _two_institutions(sqlite_url)
    path = _file(
        tmp_path,
        f'[database]\nurl = "{sqlite_url}"\n'
        '[server]\nlisten = "tcp:0:interface=127.0.0.1"\n'
        + _account_text(location="OMAIN"),
    )

    result = CliRunner().invoke(check_config, [str(path)])

    assert 1 == result.exit_code, result.output
    assert (
        "accounts[0] (kiosk1): location 'OMAIN' is a branch of 'OTHER', not of "
        "'CITY'" in result.output
    )


@pytest_twisted.ensureDeferred
async def test_serve_refuses_a_location_of_another_institution(sqlite_url: str) -> None:
    """The server does not start with an account placed at another library."""

    _two_institutions(sqlite_url)
    config = parse_config(
        {
            "server": {"listen": ["tcp:0:interface=127.0.0.1"]},
            "database": {"url": sqlite_url},
            "accounts": [account(location="OMAIN")],
        },
        "site.toml",
    )

    refusal = await start_refused(config)

    assert "location 'OMAIN' is a branch of 'OTHER'" in str(refusal)


@pytest_twisted.ensureDeferred
async def test_a_location_of_an_institution_served_is_accepted(
    sqlite_url: str,
) -> None:
    """serves_institutions lets an account stand at the served library's branch."""
    from twisted.internet import reactor  # noqa: PLC0415 - see conftest

    _two_institutions(sqlite_url)
    config = parse_config(
        {
            "server": {"listen": ["tcp:0:interface=127.0.0.1"]},
            "database": {"url": sqlite_url},
            "accounts": [
                account(location="OMAIN", policy={"serves_institutions": ["OTHER"]})
            ],
        },
        "site.toml",
    )

    running = await start_server(config, reactor)
    try:
        assert 1 == len(running.addresses())
    finally:
        await running.stop()


# -- F10: endpoints that collide -------------------------------------------------


def test_the_same_endpoint_twice_is_refused_at_the_second() -> None:
    """Two listeners on one port would stop the start with "Address in use"."""
    found = problems_of(
        server={"listen": ["tcp:7001:interface=127.0.0.1"] * 2},
    )

    assert ["server.listen[1]"] == list(found)
    assert "port 7001 on 127.0.0.1" in found["server.listen[1]"]
    assert "server.listen[0]" in found["server.listen[1]"]


def test_metrics_on_a_sip_port_is_refused_at_metrics_listen() -> None:
    """metrics.listen on a SIP listener's port is named as metrics.listen."""
    found = problems_of(
        server={"listen": "tcp:7001:interface=127.0.0.1"},
        metrics={"listen": "tcp:7001:interface=127.0.0.1"},
    )

    assert ["metrics.listen"] == list(found)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("tcp:7001", "haproxy:tcp:7001:interface=127.0.0.1"),
        ("tcp6:7001:interface=\\:\\:", "tcp:port=7001:interface=10.0.0.5"),
        ("tcp6:7001:interface=\\:\\:1", "ssl:7001:interface=0\\:0\\:\\:1"),
    ],
)
def test_a_wildcard_or_a_spelling_does_not_hide_a_clash(
    first: str, second: str
) -> None:
    """0.0.0.0 takes the port for every IPv4 address, :: for every address,
    and one address written two ways is one address."""
    found = problems_of(server={"listen": first}, listeners=[{"endpoint": second}])

    assert ["listeners[0].endpoint"] == list(found)


def test_endpoints_that_can_bind_together_are_accepted() -> None:
    """Port 0 twice, one port on ::1 and 127.0.0.1, or on two IPv4 addresses."""
    config = config_of(
        server={
            "listen": [
                "tcp:0:interface=127.0.0.1",
                "tcp:0:interface=127.0.0.1",
                "tcp:7001:interface=127.0.0.1",
                "tcp6:7001:interface=\\:\\:1",
                "tcp:7001:interface=127.0.0.2",
            ]
        },
        metrics={"listen": "tcp:7002:interface=127.0.0.1"},
    )

    assert 5 == len(config.all_listeners())


def test_check_config_refuses_a_metrics_listen_that_is_no_endpoint(
    tmp_path: Path,
) -> None:
    """metrics.listen is parsed as `ils serve` parses it, and named."""
    path = _file(
        tmp_path,
        f'[database]\nurl = "sqlite:///{tmp_path}/none.sqlite3"\n'
        '[server]\nlisten = "tcp:0:interface=127.0.0.1"\n'
        '[metrics]\nlisten = "http://0.0.0.0:9464"\n' + _account_text(),
    )

    result = CliRunner().invoke(check_config, [str(path)])

    assert 1 == result.exit_code, result.output
    assert f"{path}: metrics.listen: 'http://0.0.0.0:9464' is not" in result.output


def test_check_config_names_every_listener_that_is_no_endpoint(
    tmp_path: Path,
) -> None:
    """Two mistyped endpoints (a letter o in a port, `tpc`) and a bad metrics
    endpoint are each named with file and key, not only the first."""
    path = _file(
        tmp_path,
        f'[database]\nurl = "sqlite:///{tmp_path}/none.sqlite3"\n'
        '[metrics]\nlisten = "http://0.0.0.0:9464"\n'
        '[[listeners]]\nendpoint = "tcp:27o01"\n'
        '[[listeners]]\nendpoint = "tpc:27464"\n' + _account_text(),
    )

    result = CliRunner().invoke(check_config, [str(path)])

    assert 1 == result.exit_code, result.output
    assert f"{path}: listeners[0]: 'tcp:27o01' is not" in result.output
    assert f"{path}: listeners[1]: 'tpc:27464' is not" in result.output
    assert f"{path}: metrics.listen: 'http://0.0.0.0:9464' is not" in result.output


# -- F10: the transaction log ------------------------------------------------------


def test_a_transaction_log_that_is_a_folder_is_refused(tmp_path: Path) -> None:
    """A folder cannot be appended to; check-config names the key."""
    config = config_of(server={"transaction_log": str(tmp_path)})

    problem = transaction_log_problem(config)

    assert f"{tmp_path} is a folder" in str(problem)


def test_a_transaction_log_in_a_missing_folder_is_refused(tmp_path: Path) -> None:
    """check-config names a log whose folder does not exist, and makes none."""
    log_path = tmp_path / "missing" / "transactions.log"
    path = _file(
        tmp_path,
        f'[server]\ntransaction_log = "{log_path}"\n'
        f'[database]\nurl = "sqlite:///{tmp_path}/none.sqlite3"\n' + _account_text(),
    )

    result = CliRunner().invoke(check_config, ["--offline", str(path)])

    assert 1 == result.exit_code, result.output
    assert (
        f"{path}: server.transaction_log: the folder {log_path.parent} does not "
        "exist" in result.output
    )
    assert not log_path.parent.exists()


def test_the_transaction_log_creates_no_folder(tmp_path: Path) -> None:
    """Opening a log in a missing folder fails instead of making the folder."""
    log_path = tmp_path / "missing" / "transactions.log"

    with pytest.raises(FileNotFoundError) as caught:
        TransactionLog(log_path)

    assert f"{log_path.parent} is not an existing folder" in str(caught.value)
    assert not log_path.parent.exists()


@pytest_twisted.ensureDeferred
async def test_serve_refuses_a_transaction_log_in_a_missing_folder(
    sqlite_url: str, tmp_path: Path
) -> None:
    """The server does not start (and makes no folder) for a log it cannot open."""

    build_library(sqlite_url).database.dispose()
    log_path = tmp_path / "missing" / "transactions.log"
    config = parse_config(
        {
            "server": {
                "listen": ["tcp:0:interface=127.0.0.1"],
                "transaction_log": str(log_path),
            },
            "database": {"url": sqlite_url},
            "accounts": [account()],
        },
        "site.toml",
    )

    refusal = await start_refused(config)

    assert str(refusal).startswith("server.transaction_log: cannot open")
    assert not log_path.parent.exists()


# -- F10: timeouts -------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e300, 86_401])
@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("server", "idle_timeout"),
        ("server", "login_timeout"),
        ("server", "failed_login_window"),
    ],
)
def test_a_timeout_not_finite_or_over_a_day_is_refused(
    table: str, key: str, value: float
) -> None:
    """inf, NaN and anything over a day (86,400 seconds) are refused at the key."""
    found = problems_of(**{table: {key: value}})

    assert [f"{table}.{key}"] == list(found)


@pytest.mark.parametrize("key", ["idle_timeout", "login_timeout"])
def test_a_listener_timeout_over_a_day_is_refused(key: str) -> None:
    """A listener's own timeouts have the same bound as the server's."""
    found = problems_of(
        listeners=[{"endpoint": "tcp:0:interface=127.0.0.1", key: float("inf")}]
    )

    assert [f"listeners[0].{key}"] == list(found)


def test_a_busy_timeout_that_is_nan_is_refused_as_not_finite() -> None:
    """NaN in database.busy_timeout is named as not a finite number."""
    found = problems_of(
        database={"url": "sqlite:///unused.sqlite3", "busy_timeout": float("nan")}
    )

    assert {"database.busy_timeout": "Input should be a finite number"} == found


def test_a_timeout_of_a_day_is_accepted() -> None:
    """86,400 seconds, the bound itself, loads."""
    config = config_of(server={"idle_timeout": 86_400, "login_timeout": 86_400})

    assert 86_400 == config.server.idle_timeout


# -- F10: files that are not TOML ------------------------------------------------------


def test_toml_nested_past_python_is_not_a_valid_toml_file(tmp_path: Path) -> None:
    """2,000 nested arrays are reported as a bad file, not a RecursionError."""
    path = _file(tmp_path, "x = " + "[" * 2000 + "]" * 2000 + "\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(caught.value).startswith(f"{path}: not a valid TOML file (")


def test_serve_names_a_toml_file_nested_too_deeply(tmp_path: Path) -> None:
    """`ils serve` stops with the file named, and no traceback."""
    path = _file(tmp_path, "x = " + "[" * 2000 + "]" * 2000 + "\n")

    result = CliRunner().invoke(serve, ["--config", str(path)])

    assert 1 == result.exit_code
    assert f"{path}: not a valid TOML file (" in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, RecursionError)


def test_check_config_names_a_toml_file_nested_too_deeply(tmp_path: Path) -> None:
    """`ils check-config` says the file is not valid TOML, with no traceback."""
    path = _file(tmp_path, "x = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n")

    result = CliRunner().invoke(check_config, ["--offline", str(path)])

    assert 1 == result.exit_code
    assert f"{path}: not a valid TOML file (" in result.output
    assert not isinstance(result.exception, RecursionError)


def test_a_toml_syntax_error_is_not_a_valid_toml_file(tmp_path: Path) -> None:
    """A file tomllib cannot read is named, with tomllib's line and column."""
    path = _file(tmp_path, "[server\n")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert str(caught.value).startswith(f"{path}: not a valid TOML file (")
    assert "line 1" in str(caught.value)
