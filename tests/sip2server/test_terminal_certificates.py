"""Accounts tied to terminals' TLS client certificates (#5): login over real TLS
on loopback, reload, and the configuration checks.

The certificates (a terminals' CA, the server's, several terminals') are made
in each test's folder; the server runs on a copy of the stock SQLite library.
Expected fingerprints are computed here with hashlib from the DER bytes, not
by the server's code.
"""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.logger import formatEvent, globalLogPublisher

from sip2server.app import RunningServer
from sip2server.config import ConfigError, parse_config
from sip2server.reload import reload_server
from tests.sip2server.certificates import (
    TlsFiles,
    issue,
    make_tls_files,
    new_key,
    write_certificate,
    write_key,
)
from tests.sip2server.conftest import Launcher, target
from tests.sip2server.test_transports import GATE_LOGIN_FRAME
from tests.sip2server.test_wire_behaviour import (
    LOGIN_FRAME,
    STATUS_FRAME,
    WRONG_LOGIN_FRAME,
    RawTerminal,
    in_thread,
)

# -- certificates ------------------------------------------------------------------

# A terminal's certificate is for client authentication only.
_CLIENT_AUTH = [(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)]


@dataclass(frozen=True)
class Terminal:
    """One terminal's certificate and key files, and its SHA-256 fingerprint."""

    certificate: Path
    key: Path
    fingerprint: str  # lower-case hex, no colons


def make_authority(folder: Path) -> tuple[Path, Any, Any]:
    """A terminals' CA: its PEM file, certificate and key."""
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Library terminals")])
    certificate = issue(
        name, key, [(x509.BasicConstraints(ca=True, path_length=0), True)]
    )
    path = write_certificate(certificate, folder / "terminals-ca.pem")
    return path, certificate, key


def _terminal_files(
    folder: Path,
    file_name: str,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> Terminal:
    """`certificate` and `key` written as `file_name`.pem and .key in `folder`."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return Terminal(
        write_certificate(certificate, folder / f"{file_name}.pem"),
        write_key(key, folder / f"{file_name}.key"),
        hashlib.sha256(der).hexdigest(),
    )


def make_terminal(
    folder: Path, file_name: str, subject: x509.Name, ca: x509.Certificate, ca_key: Any
) -> Terminal:
    """A terminal's certificate for `subject`, signed by `ca`, with a new key."""
    key = new_key()
    certificate = issue(subject, key, _CLIENT_AUTH, issuer=ca.subject, signer=ca_key)
    return _terminal_files(folder, file_name, certificate, key)


def _subject(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "City Library"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class Site:
    """The server's TLS files and three terminals' certificates from one CA."""

    server: TlsFiles
    ca: Path
    kiosk: Terminal  # CN=kiosk-1,O=City Library
    renewed: Terminal  # the same subject, a new key: kiosk-1's next certificate
    other: Terminal  # CN=kiosk-2,O=City Library, the same CA


def make_site(folder: Path) -> Site:
    """Certificates for a site: server, terminals' CA and three terminals."""
    server = make_tls_files(folder)
    ca_path, ca, ca_key = make_authority(folder)
    return Site(
        server=server,
        ca=ca_path,
        kiosk=make_terminal(folder, "kiosk-1", _subject("kiosk-1"), ca, ca_key),
        renewed=make_terminal(folder, "kiosk-1-2027", _subject("kiosk-1"), ca, ca_key),
        other=make_terminal(folder, "kiosk-2", _subject("kiosk-2"), ca, ca_key),
    )


def listeners(site: Site) -> list[dict[str, Any]]:
    """0: TLS asking for terminals' certificates; 1: plain TCP; 2: TLS asking none."""
    tls = site.server.tls()
    return [
        {
            "endpoint": "tcp:0:interface=127.0.0.1",
            "tls": {**tls, "client_ca": str(site.ca)},
        },
        {"endpoint": "tcp:0:interface=127.0.0.1"},
        {"endpoint": "tcp:0:interface=127.0.0.1", "tls": tls},
    ]


# -- clients -----------------------------------------------------------------------


def tls_client(
    running: RunningServer, index: int, site: Site, terminal: Terminal | None
) -> RawTerminal:
    """A terminal on listener `index` over TLS, with `terminal`'s certificate."""
    context = ssl.create_default_context(cafile=str(site.server.ca))
    if terminal is not None:
        context.load_cert_chain(terminal.certificate, terminal.key)
    client = RawTerminal(target(running, index))
    client.sock = context.wrap_socket(client.sock, server_hostname="127.0.0.1")
    return client


def tls_login(
    running: RunningServer,
    index: int,
    site: Site,
    terminal: Terminal | None,
    frame: bytes = LOGIN_FRAME,
) -> bytes:
    """The reply to one login over TLS."""
    with tls_client(running, index, site, terminal) as client:
        return client.exchange(frame)


def plain_login(running: RunningServer, frame: bytes = LOGIN_FRAME) -> bytes:
    """The reply to one login on the plain listener (1)."""
    with RawTerminal(target(running, 1)) as client:
        return client.exchange(frame)


def closed_by_server(client: RawTerminal) -> bool:
    """Whether the server closes the connection (True) before the timeout."""
    try:
        return client.wait_for_close()
    except ssl.SSLError:
        return True


class Seen:
    """The log lines written while it is open, as text."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Seen:
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc: object) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    def lines(self, containing: str) -> list[str]:
        """Every line that contains `containing`."""
        texts = [formatEvent(event) for event in self.events]
        return [text for text in texts if containing in text]


def colons(fingerprint: str) -> str:
    """A hex fingerprint as openssl prints it: AB:CD:..."""
    upper = fingerprint.upper()
    return ":".join(upper[index : index + 2] for index in range(0, len(upper), 2))


# -- login ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_terminal_with_the_named_certificate_logs_in(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A fingerprint given as plain lower-case hex admits that certificate: 941."""
    site = make_site(tmp_path)
    running = await launcher.start(
        listeners=listeners(site),
        kiosk={"certificate_fingerprints": [site.kiosk.fingerprint]},
    )

    with Seen() as seen:
        answer = await in_thread(tls_login, running, 0, site, site.kiosk)

    assert b"941" == answer
    handshakes = seen.lines("TLS client certificate conn=")
    assert len(handshakes) == 1, handshakes
    assert f"sha256={colons(site.kiosk.fingerprint)}" in handshakes[0]
    assert "subject=CN=kiosk-1,O=City Library" in handshakes[0]


@pytest_twisted.ensureDeferred
async def test_another_certificate_of_the_same_ca_is_refused_like_a_wrong_password(
    launcher: Launcher, tmp_path: Path
) -> None:
    """kiosk-2's certificate with kiosk1's right password: 940, as a wrong
    password gets, and the log says which certificate, never the password."""
    site = make_site(tmp_path)
    running = await launcher.start(
        listeners=listeners(site),
        kiosk={"certificate_fingerprints": [colons(site.kiosk.fingerprint)]},
    )

    with Seen() as seen:
        answer = await in_thread(tls_login, running, 0, site, site.other)
        wrong_password = await in_thread(
            tls_login, running, 0, site, site.kiosk, WRONG_LOGIN_FRAME
        )

    assert b"940" == answer
    assert wrong_password == answer
    refusals = seen.lines("login refused")
    assert 2 == len(refusals), refusals
    assert refusals[0].endswith(
        "login=kiosk1: the terminal's certificate (subject CN=kiosk-2,O=City "
        f"Library, sha256 {colons(site.other.fingerprint)}) is in neither the "
        "account's certificate_fingerprints nor its certificate_subjects"
    )
    assert refusals[1].endswith("login=kiosk1: wrong login or password")
    every = "\n".join(formatEvent(event) for event in seen.events)
    assert "kiosk-secret" not in every


@pytest_twisted.ensureDeferred
async def test_a_subject_admits_the_renewed_certificate_and_no_other(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A subject written loosely (case, spaces) admits kiosk-1's first and
    renewed certificates (new key, new fingerprint), not kiosk-2's."""
    site = make_site(tmp_path)
    running = await launcher.start(
        listeners=listeners(site),
        kiosk={"certificate_subjects": ["cn = Kiosk-1, o = city library"]},
    )

    first = await in_thread(tls_login, running, 0, site, site.kiosk)
    renewed = await in_thread(tls_login, running, 0, site, site.renewed)
    other = await in_thread(tls_login, running, 0, site, site.other)

    assert site.kiosk.fingerprint != site.renewed.fingerprint
    assert (b"941", b"941", b"940") == (first, renewed, other)


@pytest_twisted.ensureDeferred
async def test_a_tied_account_is_refused_without_a_certificate_and_on_plain_tcp(
    launcher: Launcher, tmp_path: Path
) -> None:
    """On TLS that asks for no certificate, and on plain TCP, the tied kiosk
    gets 940 with its reason logged."""
    site = make_site(tmp_path)
    running = await launcher.start(
        listeners=listeners(site),
        kiosk={"certificate_fingerprints": [site.kiosk.fingerprint]},
    )

    with Seen() as seen:
        # The terminal offers its certificate; listener 2 never asks for it.
        no_certificate = await in_thread(tls_login, running, 2, site, site.kiosk)
        plain = await in_thread(plain_login, running)

    assert b"940" == no_certificate
    assert b"940" == plain
    refusals = seen.lines("login refused")
    assert 2 == len(refusals), refusals
    assert refusals[0].endswith(
        "login=kiosk1: the account is tied to client certificates and the "
        "terminal sent none (only a listener with tls.client_ca asks for one)"
    )
    assert refusals[1].endswith(
        "login=kiosk1: the account is tied to client certificates and this "
        "connection is plain TCP, not TLS"
    )


@pytest_twisted.ensureDeferred
async def test_an_account_without_certificate_keys_logs_in_as_before(
    launcher: Launcher, tmp_path: Path
) -> None:
    """gate1 (not tied) logs in on plain TCP, on TLS without a certificate and
    with any certificate, while kiosk1 beside it is tied."""
    site = make_site(tmp_path)
    running = await launcher.start(
        listeners=listeners(site),
        kiosk={"certificate_fingerprints": [site.kiosk.fingerprint]},
    )

    plain = await in_thread(plain_login, running, GATE_LOGIN_FRAME)
    no_certificate = await in_thread(
        tls_login, running, 2, site, None, GATE_LOGIN_FRAME
    )
    any_certificate = await in_thread(
        tls_login, running, 0, site, site.other, GATE_LOGIN_FRAME
    )

    assert (b"941", b"941", b"941") == (plain, no_certificate, any_certificate)


def make_self_signed(folder: Path) -> Terminal:
    """A terminal's certificate that signs itself (no CA), with its key."""
    key = new_key()
    certificate = issue(_subject("kiosk-9"), key, _CLIENT_AUTH)
    return _terminal_files(folder, "kiosk-9", certificate, key)


@pytest_twisted.ensureDeferred
async def test_a_self_signed_terminal_certificate_in_client_ca_is_pinned_by_fingerprint(
    launcher: Launcher, tmp_path: Path
) -> None:
    """With a self-signed terminal certificate as the listener's client_ca (as
    the docs advise without a CA), its fingerprint admits that terminal: 941."""
    site = make_site(tmp_path)
    kiosk = make_self_signed(tmp_path)
    only_listener = listeners(site)[0]
    only_listener["tls"]["client_ca"] = str(kiosk.certificate)
    running = await launcher.start(
        listeners=[only_listener],
        kiosk={"certificate_fingerprints": [kiosk.fingerprint]},
    )

    answer = await in_thread(tls_login, running, 0, site, kiosk)

    assert b"941" == answer


# -- reload ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_reload_that_ties_the_account_closes_terminals_it_no_longer_admits(
    launcher: Launcher, tmp_path: Path
) -> None:
    """Tied to kiosk-1's fingerprint on reload: the kiosk1 login from kiosk-2's
    certificate is closed with the reason logged; kiosk-1's own serves on."""
    site = make_site(tmp_path)
    running = await launcher.start(listeners=listeners(site))
    own = await in_thread(tls_client, running, 0, site, site.kiosk)
    borrowed = await in_thread(tls_client, running, 0, site, site.other)
    from twisted.internet import reactor  # noqa: PLC0415

    try:
        assert b"941" == await in_thread(own.exchange, LOGIN_FRAME)
        assert b"941" == await in_thread(borrowed.exchange, LOGIN_FRAME)
        tightened = launcher.config(
            listeners=listeners(site),
            kiosk={"certificate_fingerprints": [site.kiosk.fingerprint]},
        )
        with Seen() as seen:
            applied = await reload_server(running, reactor, lambda: tightened)
            closed = await in_thread(closed_by_server, borrowed)
        status = await in_thread(own.exchange, STATUS_FRAME)
    finally:
        own.close()
        borrowed.close()

    assert applied
    assert closed
    assert status.startswith(b"98")
    closings = seen.lines("reload: closing")
    assert 1 == len(closings), closings
    assert (
        "login=kiosk1: its certificate is no longer admitted: the terminal's "
        in (closings[0])
    )
    assert "CN=kiosk-2,O=City Library" in closings[0]


# -- configuration --------------------------------------------------------------------


def test_check_config_names_a_bad_fingerprint_and_a_subject_that_does_not_parse(
    tmp_path: Path,
) -> None:
    """`ils check-config --offline` names the file, each bad entry's key and why."""
    config = tmp_path / "tied.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "none.sqlite3"}"

[[accounts]]
login = "kiosk-1"
password = "x"
institution = "CITY"
location = "NORTH"
certificate_fingerprints = ["{"ab" * 32}", "12:34:56"]
certificate_subjects = ["CN=kiosk-1,O=Library", "kiosk-1", "XX=kiosk-1"]
"""
    )

    result = subprocess.run(
        [sys.executable, "-m", "ils.cli", "check-config", "--offline", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert 1 == result.returncode
    said = result.stderr
    assert (
        f"{config}: accounts[0].certificate_fingerprints[1]: '12:34:56' has 6 hex "
        "digits, a SHA-256 fingerprint has 64; get it with: openssl x509 -in "
        "terminal.pem -noout -fingerprint -sha256"
    ) in said
    assert (
        f"{config}: accounts[0].certificate_subjects[1]: 'kiosk-1' is not a "
        "certificate subject: 'kiosk-1' is not NAME=value; write it like "
        "CN=kiosk-1,O=Library"
    ) in said
    assert (
        f"{config}: accounts[0].certificate_subjects[2]: 'XX=kiosk-1': 'XX' is not "
        "a subject attribute name"
    ) in said
    assert "certificate_fingerprints[0]" not in said
    assert "certificate_subjects[0]" not in said


def _document(listeners: list[dict[str, Any]], **account: Any) -> dict[str, Any]:
    return {
        "database": {"url": "sqlite://"},
        "listeners": listeners,
        "accounts": [
            {
                "login": "kiosk-1",
                "password": "x",
                "institution": "CITY",
                "location": "NORTH",
                **account,
            }
        ],
    }


def test_a_tied_account_no_listener_asks_a_certificate_for_is_refused() -> None:
    """Tied to a subject, admitted only on TLS without client_ca: a ConfigError
    at the account's key, since that account could never log in."""
    tls = {"certificate": "/etc/ils/tls/s.pem", "private_key": "/etc/ils/tls/s.key"}
    document = _document(
        [{"endpoint": "tcp:6443", "tls": tls}, {"endpoint": "tcp:6001"}],
        certificate_subjects=["CN=kiosk-1"],
    )

    with pytest.raises(ConfigError) as raised:
        parse_config(document, "sip.toml")

    assert [
        (
            "accounts[0].certificate_subjects",
            "'kiosk-1' is tied to client certificates, but no listener it may "
            "log in through asks terminals for one; give such a listener a "
            "[listeners.tls] client_ca",
        )
    ] == raised.value.problems


def test_fingerprints_are_kept_as_openssl_prints_them() -> None:
    """Plain hex, `sha256:` and openssl's whole line all become AB:CD:... form."""
    tls = {
        "certificate": "/etc/ils/tls/s.pem",
        "private_key": "/etc/ils/tls/s.key",
        "client_ca": "/etc/ils/tls/ca.pem",
    }
    given = [
        "0f" * 32,
        "sha256:" + "A1" * 32,
        "SHA256 Fingerprint=" + "7E:" * 31 + "7E",
    ]

    config = parse_config(
        _document(
            [{"endpoint": "tcp:6443", "tls": tls}], certificate_fingerprints=given
        ),
        "sip.toml",
    )

    assert (
        "0F:" * 31 + "0F",
        "A1:" * 31 + "A1",
        "7E:" * 31 + "7E",
    ) == config.accounts[0].certificate_fingerprints


def test_an_institution_cannot_give_its_accounts_certificates() -> None:
    """Certificate keys say which terminal an account is: an [institution.X]
    table that sets one is refused at its key."""
    document = _document([{"endpoint": "tcp:6001"}])
    document["institution"] = {"CITY": {"certificate_subjects": ["CN=kiosk-1"]}}

    with pytest.raises(ConfigError) as raised:
        parse_config(document, "sip.toml")

    assert any(
        "CITY.certificate_subjects: not an account setting an institution can give"
        in problem
        for _, problem in raised.value.problems
    )
