"""`serve` terminating TLS itself, and believing X-Forwarded-For only from the
reverse proxies it is told to trust."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.processes import clean_env, start_broker, stop, vdi_broker


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def test_serve_terminates_tls(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    proc, base = start_broker(tmp_path / "data", tls_cert_file=str(cert), tls_key_file=str(key))
    try:
        https = base.replace("http://", "https://")
        context = ssl.create_default_context(cafile=str(cert))
        response = httpx.get(f"{https}/healthz", verify=context)
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        # Plain HTTP on the TLS port gets no answer a browser would accept.
        plain_ok = False
        try:
            plain_ok = httpx.get(f"{base}/healthz", timeout=3).status_code == 200
        except httpx.HTTPError:
            plain_ok = False
        assert not plain_ok
    finally:
        stop(proc)


def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    env = clean_env({"VDI_DATA_DIR": str(tmp_path / "data")})

    def last_login_ip() -> str:
        out = vdi_broker("audit", "--event", "login", "--limit", "1", "--json", env=env)
        return str(json.loads(out.stdout)[0]["source_ip"])

    forged = {"X-Forwarded-For": "203.0.113.7"}
    body = {"username": "nobody", "password": "whatever!", "code": "123456"}
    proc, base = start_broker(tmp_path / "data")
    try:
        httpx.post(f"{base}/api/v1/auth/login", json=body, headers=forged)
        assert last_login_ip() == "127.0.0.1"  # not trusted: the header is ignored
    finally:
        stop(proc)
    proc, base = start_broker(tmp_path / "data", trusted_proxies='["127.0.0.1/32"]')
    try:
        httpx.post(f"{base}/api/v1/auth/login", json=body, headers=forged)
        assert last_login_ip() == "203.0.113.7"  # the proxy on loopback is trusted
    finally:
        stop(proc)
