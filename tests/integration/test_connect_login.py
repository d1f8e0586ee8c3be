"""vdi-connect's login against the real broker app on plain HTTP, whose cookie is
for HTTPS only (cookie_secure, the default): the login itself succeeds, but the
cookie would never be sent back, so every later request looked logged out and
the user read "Your login has expired" a moment after logging in."""

from __future__ import annotations

import httpx
import pytest

from broker.app import create_app
from broker.connect import BAD_INPUT, Broker, Stop
from broker.runtime import Runtime
from tests.support.accounts import PASSWORD, add_user, code_now


async def log_in(rt: Runtime, base: str) -> Broker:
    """vdi-connect's Broker logging in to the app of `rt` at `base`, in process."""
    secret = await add_user(rt, "maria")
    assert secret is not None
    app = create_app(rt.settings, runtime=rt)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=base) as http:
            broker = Broker(http, f"{base}/")
            await broker.login("maria", PASSWORD, {"code": code_now(rt, secret)})
            await broker.logout()
            return broker


async def test_plain_http_with_a_cookie_for_https_says_to_use_https(runtime: Runtime) -> None:
    assert runtime.settings.cookie_secure
    with pytest.raises(Stop) as stopped:
        await log_in(runtime, "http://vdi.example.org:8000")
    assert stopped.value.code == BAD_INPUT
    assert "use its https:// address instead of http://vdi.example.org:8000" in (
        stopped.value.message
    )


async def test_over_https_the_same_login_works(runtime: Runtime) -> None:
    broker = await log_in(runtime, "https://vdi.example.org")
    assert broker.csrf
