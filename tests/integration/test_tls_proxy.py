"""`serve` terminating TLS itself, and believing X-Forwarded-For only from the
reverse proxies it is told to trust."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import httpx
import pytest

from agent import http as agent_http
from broker.ports import free_port
from tests.support.certs import ca_and_server
from tests.support.processes import clean_env, new_broker_env, start_broker, stop, vdi_broker


def test_serve_terminates_tls(tmp_path: Path) -> None:
    ca, cert, key = ca_and_server(tmp_path)
    proc, base = start_broker(tmp_path / "data", tls_cert_file=str(cert), tls_key_file=str(key))
    try:
        https = base.replace("http://", "https://")
        context = ssl.create_default_context(cafile=str(ca))
        response = httpx.get(f"{https}/healthz", verify=context)
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        # Browsers are told to come back over HTTPS only.
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        # Plain HTTP on the TLS port gets no answer a browser would accept.
        plain_ok = False
        try:
            plain_ok = httpx.get(f"{base}/healthz", timeout=3).status_code == 200
        except httpx.HTTPError:
            plain_ok = False
        assert not plain_ok
        # An agent given the http:// address is told what is likely wrong.
        with pytest.raises(agent_http.HttpError) as refused:
            asyncio.run(agent_http.post(f"{base}/api/v1/agent/report", b"{}", {}, 10))
        assert "if the broker speaks HTTPS, give its https:// address" in str(refused.value)
    finally:
        stop(proc)


def test_serve_names_a_tls_file_it_cannot_use(tmp_path: Path) -> None:
    """A missing, unreadable or wrong certificate or key file ended `serve` in a
    traceback from uvicorn (FileNotFoundError, "PEM lib", an AssertionError for a
    key without a certificate) that named no file. Now one line says which."""
    _, cert, key = ca_and_server(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_cert, _ = ca_and_server(tmp_path / "other")
    missing = tmp_path / "missing.pem"
    env = new_broker_env(
        tmp_path / "data", {"VDI_HTTP_PORT": str(free_port()), "VDI_GATEWAY_PORT": str(free_port())}
    )
    for files, said in (
        (
            {"VDI_TLS_CERT_FILE": str(missing), "VDI_TLS_KEY_FILE": str(key)},
            f"tls_cert_file {missing} cannot be read: No such file or directory",
        ),
        (
            {"VDI_TLS_CERT_FILE": str(cert), "VDI_TLS_KEY_FILE": str(missing)},
            f"tls_key_file {missing} cannot be read: No such file or directory",
        ),
        ({"VDI_TLS_KEY_FILE": str(key)}, "tls_key_file is set without tls_cert_file"),
        (
            {"VDI_TLS_CERT_FILE": str(cert)},
            f"tls_cert_file {cert} is not a certificate and its private key",
        ),
        (
            {"VDI_TLS_CERT_FILE": str(other_cert), "VDI_TLS_KEY_FILE": str(key)},
            f"tls_cert_file {other_cert} with tls_key_file {key} is not a certificate",
        ),
    ):
        result = vdi_broker("serve", env={**env, **files}, timeout=30)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error: {said}"), result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr


def test_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    env = clean_env({"VDI_DATA_DIR": str(tmp_path / "data")})

    def last_login_ip() -> str:
        out = vdi_broker("audit", "--event", "login", "--limit", "1", "--json", env=env)
        return str(json.loads(out.stdout)[0]["source_ip"])

    forged = {"X-Forwarded-For": "203.0.113.7"}
    body = {"username": "nobody", "password": "whatever!", "code": "123456"}
    proc, base = start_broker(tmp_path / "data")
    try:
        response = httpx.post(f"{base}/api/v1/auth/login", json=body, headers=forged)
        assert last_login_ip() == "127.0.0.1"  # not trusted: the header is ignored
        assert "strict-transport-security" not in response.headers  # plain HTTP: not ours
    finally:
        stop(proc)
    proc, base = start_broker(tmp_path / "data", trusted_proxies='["127.0.0.1/32"]')
    try:
        httpx.post(f"{base}/api/v1/auth/login", json=body, headers=forged)
        assert last_login_ip() == "203.0.113.7"  # the proxy on loopback is trusted
    finally:
        stop(proc)
