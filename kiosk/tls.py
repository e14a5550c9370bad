"""Client TLS options for the kiosk's connections (the SIP2 link, email receipts).

Layer: `kiosk`, Twisted and pyOpenSSL only (no Kivy, never `ils`).
"""

from __future__ import annotations

import re
from typing import Any

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL
)


def client_tls_options(host: str, ca_file: str, *, key: str) -> Any:
    """TLS options that check the server's certificate against `host`, trusting
    the certificates in `ca_file` (or the system's when it is empty).

    Raises:
        OSError: `ca_file` cannot be read.
        ValueError: `ca_file` holds no certificate that can be read; the
            message names the configuration `key`.
    """
    from OpenSSL.crypto import Error as OpenSSLError  # noqa: PLC0415
    from twisted.internet import ssl  # noqa: PLC0415

    trust: Any = None
    if ca_file:
        with open(ca_file, "rb") as file:
            pem = file.read()
        try:
            blocks = _PEM_CERTIFICATE.findall(pem)
            certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
        except OpenSSLError as problem:
            raise ValueError(f"{key}: unreadable: {problem}") from None
        if not certificates:
            raise ValueError(f"{key}: no PEM certificate in it")
        trust = ssl.trustRootFromCertificates(  # type: ignore[no-untyped-call]
            certificates
        )
    return ssl.optionsForClientTLS(host, trustRoot=trust)
