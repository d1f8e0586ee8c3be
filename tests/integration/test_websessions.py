"""Web sessions: rotation, idle and absolute expiry, logout, CSRF."""

from __future__ import annotations

import httpx

from broker.clock import FakeClock
from broker.runtime import Runtime
from tests.support.accounts import add_user, code_now, login

COOKIE = "__Host-vdi_session"


async def me_with_cookie(client: httpx.AsyncClient, value: str) -> httpx.Response:
    """GET /me presenting exactly this cookie value (and no other)."""
    client.cookies.clear()
    return await client.get("/api/v1/me", headers={"cookie": f"{COOKIE}={value}"})


async def logged_in(runtime: Runtime, client: httpx.AsyncClient) -> tuple[str, str]:
    secret = await add_user(runtime)
    response = await login(client, "maria", code=code_now(runtime, secret or ""))
    assert response.status_code == 200
    return secret or "", response.json()["csrf_token"]


async def test_each_login_gets_a_new_id_and_ends_the_old_session(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _ = await logged_in(runtime, client)
    first = client.cookies[COOKIE]
    clock.advance(30)
    assert (await login(client, "maria", code=code_now(runtime, secret))).status_code == 200
    second = client.cookies[COOKIE]
    assert first != second
    # The old cookie no longer works, even if an attacker had planted it.
    assert (await me_with_cookie(client, second)).status_code == 200
    assert (await me_with_cookie(client, first)).status_code == 401


async def test_idle_timeout(runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock) -> None:
    await logged_in(runtime, client)
    idle = runtime.settings.session_idle_timeout_s
    clock.advance(idle - 61)
    assert (await client.get("/api/v1/me")).status_code == 200  # this request renews
    clock.advance(idle - 1)
    assert (await client.get("/api/v1/me")).status_code == 200
    clock.advance(idle + 1)
    response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


async def test_absolute_timeout_even_when_active(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await logged_in(runtime, client)
    absolute = runtime.settings.session_absolute_timeout_s
    step = runtime.settings.session_idle_timeout_s // 2
    elapsed = 0
    while elapsed + step < absolute:
        clock.advance(step)
        elapsed += step
        assert (await client.get("/api/v1/me")).status_code == 200
    clock.advance(absolute - elapsed)
    assert (await client.get("/api/v1/me")).status_code == 401


async def test_logout_revokes_and_needs_csrf(runtime: Runtime, client: httpx.AsyncClient) -> None:
    _, csrf = await logged_in(runtime, client)
    refused = await client.post("/api/v1/auth/logout")
    assert refused.status_code == 403
    assert refused.json()["error"] == "csrf_failed"
    wrong = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": "x" * 64})
    assert wrong.status_code == 403
    assert (await client.get("/api/v1/me")).status_code == 200  # nothing changed
    cookie = client.cookies[COOKIE]
    ok = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200
    assert (await me_with_cookie(client, cookie)).status_code == 401


async def test_csrf_token_of_another_session_is_refused(
    runtime: Runtime, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, first_csrf = await logged_in(runtime, client)
    clock.advance(30)
    await login(client, "maria", code=code_now(runtime, secret))
    response = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": first_csrf})
    assert response.status_code == 403


async def test_without_cookie_everything_needs_login(client: httpx.AsyncClient) -> None:
    for method, path in (
        ("GET", "/api/v1/me"),
        ("POST", "/api/v1/auth/logout"),
        ("GET", "/api/v1/admin/audit"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 401
        assert response.json()["error"] == "not_authenticated"


async def test_plain_http_demo_cookie_has_no_host_prefix(tmp_path, sqlite_url, clock) -> None:  # type: ignore[no-untyped-def]
    from broker.app import create_app
    from broker.runtime import open_runtime
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, sqlite_url, cookie_secure=False)
    rt = await open_runtime(settings, clock=clock)
    try:
        secret = await add_user(rt)
        app = create_app(settings, runtime=rt)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            response = await login(c, "maria", code=code_now(rt, secret or ""))
            cookie = response.headers["set-cookie"]
            assert cookie.startswith("vdi_session=")
            assert "secure" not in cookie.lower()
            assert "httponly" in cookie.lower()
            assert (await c.get("/api/v1/me")).status_code == 200
    finally:
        await rt.close()
