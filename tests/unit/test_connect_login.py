"""vdi-connect's login against a broker on plain HTTP whose cookie is for HTTPS
only (cookie_secure, the default): the login itself succeeds, but the cookie
would never be sent back, so every later request looked logged out and the user
read "Your login has expired" a moment after logging in."""

from __future__ import annotations

import httpx
import pytest

from broker.connect import BAD_INPUT, Broker, Stop

LOGIN = {"csrf_token": "c" * 64, "user": {"name": "maria"}, "idle_timeout_s": 1800}


def login_answer(cookie: str) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/auth/login"
        return httpx.Response(200, json=LOGIN, headers={"set-cookie": cookie})

    return httpx.MockTransport(handler)


async def login(base: str, cookie: str) -> Broker:
    async with httpx.AsyncClient(base_url=base, transport=login_answer(cookie)) as http:
        broker = Broker(http, f"{base}/")
        await broker.login("maria", "secret", {"code": "123456"})
        return broker


SECURE = "__Host-vdi_session=abc; HttpOnly; Max-Age=36000; Path=/; SameSite=strict; Secure"
PLAIN = "vdi_session=abc; HttpOnly; Max-Age=36000; Path=/; SameSite=strict"


async def test_plain_http_with_a_cookie_for_https_says_to_use_https() -> None:
    with pytest.raises(Stop) as stopped:
        await login("http://vdi.example.org:8000", SECURE)
    assert stopped.value.code == BAD_INPUT
    assert "https://" in stopped.value.message
    assert "http://vdi.example.org:8000" in stopped.value.message


@pytest.mark.parametrize(
    ("base", "cookie"),
    [("https://vdi.example.org", SECURE), ("http://127.0.0.1:8000", PLAIN)],
)
async def test_a_cookie_that_comes_back_logs_in(base: str, cookie: str) -> None:
    broker = await login(base, cookie)
    assert broker.csrf == LOGIN["csrf_token"]
