"""Keys and certificates for the TLS tests, made at test time in a folder.

Test support for tests/sip2server, not a test module. Imports only
cryptography and the standard library. Every certificate is issued with a
fresh P-256 key, a random serial number and a validity from five minutes ago
to a day ahead, so a test never depends on the clock of the machine.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# An extension to add and whether it is critical.
Extension = tuple[x509.ExtensionType, bool]


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    """`key` as an unencrypted PKCS#8 PEM file at `path`."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def write_certificate(certificate: x509.Certificate, path: Path) -> Path:
    """`certificate` as a PEM file at `path`."""
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    extensions: Sequence[Extension] = (),
    *,
    issuer: x509.Name | None = None,
    signer: ec.EllipticCurvePrivateKey | None = None,
) -> x509.Certificate:
    """A certificate for `subject` and `key`, signed by `signer` in the name of
    `issuer`; without them it signs itself."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key if signer is None else signer, hashes.SHA256())


# -- a CA, a server certificate for 127.0.0.1 and a terminal's ----------------------


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the CA, the server's certificate and key, a terminal's."""

    ca: Path
    server_certificate: Path
    server_key: Path
    terminal_certificate: Path
    terminal_key: Path
    other_ca: Path

    def tls(self, *, client_ca: bool = False) -> dict[str, str]:
        """A listener's [tls] table serving these files; with `client_ca`, it
        asks terminals for a certificate signed by the test CA."""
        table = {
            "certificate": str(self.server_certificate),
            "private_key": str(self.server_key),
        }
        if client_ca:
            table["client_ca"] = str(self.ca)
        return table

    def listener(
        self, endpoint: str = "tcp:0:interface=127.0.0.1", *, client_ca: bool = False
    ) -> dict[str, Any]:
        """A [[listeners]] table: `endpoint` with TLS from these files."""
        return {"endpoint": endpoint, "tls": self.tls(client_ca=client_ca)}


def _common_name(name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])


def _authority(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    certificate = issue(
        _common_name(name),
        key,
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (usage, True),
            (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False),
        ],
    )
    return certificate, key


def _leaf(
    name: str,
    usage: x509.ObjectIdentifier,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    addresses = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
    )
    certificate = issue(
        _common_name(name),
        key,
        [
            (addresses, False),
            (x509.ExtendedKeyUsage([usage]), False),
            (
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                False,
            ),
        ],
        issuer=ca.subject,
        signer=ca_key,
    )
    return certificate, key


def make_tls_files(folder: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1 and a terminal's, as PEM files."""
    ca, ca_key = _authority("Test library terminals CA")
    server, server_key = _leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, ca, ca_key)
    terminal, terminal_key = _leaf(
        "kiosk1.branch.test", ExtendedKeyUsageOID.CLIENT_AUTH, ca, ca_key
    )
    other, _ = _authority("Someone else's CA")
    return TlsFiles(
        ca=write_certificate(ca, folder / "ca.pem"),
        server_certificate=write_certificate(server, folder / "server.pem"),
        server_key=write_key(server_key, folder / "server.key"),
        terminal_certificate=write_certificate(terminal, folder / "terminal.pem"),
        terminal_key=write_key(terminal_key, folder / "terminal.key"),
        other_ca=write_certificate(other, folder / "other-ca.pem"),
    )
