"""The broker's own TLS files (tls_cert_file, tls_key_file), checked before the
HTTP server starts: uvicorn loads them only once the app has started, and a file
it cannot use ends `serve` in a traceback that names no file."""

from __future__ import annotations

import ssl
from pathlib import Path


class TlsFileError(ValueError):
    """A TLS certificate or key file the broker cannot serve with."""


def check_tls_files(cert: Path | None, key: Path | None) -> None:
    """Raise TlsFileError, naming the setting and the file, unless `cert` (with
    `key`, or holding the key itself) is a certificate and its private key in
    PEM form, or neither is given (plain HTTP)."""
    if cert is None:
        if key is not None:
            raise TlsFileError(
                "tls_key_file is set without tls_cert_file; give both, or neither for plain HTTP"
            )
        return
    for name, path in (("tls_cert_file", cert), ("tls_key_file", key)):
        if path is not None:
            try:
                path.read_bytes()
            except OSError as exc:
                raise TlsFileError(f"{name} {path} cannot be read: {exc.strerror or exc}") from None

    def no_passphrase() -> str:
        # OpenSSL would otherwise ask for it on the terminal (none under systemd).
        raise TlsFileError(f"the private key in {key or cert} is encrypted; give it without one")

    files = f"tls_cert_file {cert}" + (f" with tls_key_file {key}" if key else "")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, no_passphrase)
    except ssl.SSLError as exc:
        why = f" ({exc.reason})" if exc.reason else ""
        raise TlsFileError(
            f"{files} is not a certificate and its private key in PEM form{why}"
        ) from None
