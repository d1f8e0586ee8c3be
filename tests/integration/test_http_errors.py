"""Every error is JSON in the contract's shape, an unexpected one too."""

from __future__ import annotations

import httpx

from broker.app import create_app
from broker.domain import Role
from broker.runtime import Runtime
from tests.support.fleet import add_host, add_pool, staff


async def test_an_unexpected_error_is_a_json_500_with_the_security_headers(
    runtime: Runtime,
) -> None:
    app = create_app(runtime.settings, runtime=runtime)

    @app.get("/api/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a bug, with a detail that must not leave the broker")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
        response = await c.get("/api/v1/broken")
        missing = await c.get("/api/v1/nothing-here")
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal",
        "message": "Something went wrong in the broker.",
    }
    assert "detail" not in response.text
    for headers in (response.headers, missing.headers):
        assert headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["cache-control"] == "no-store"
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_values_the_database_cannot_store_are_a_4xx_on_either_database(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """PostgreSQL refuses NUL in text and ints beyond an int4 column where SQLite
    stores them; such input reaching a query is bad input (422), not a 500, and
    not a "database down" 503 either."""
    await add_pool(runtime)
    await add_host(runtime, client)
    admin = await staff(runtime, "root.admin", department="IT", role=Role.ADMIN)
    requests = [
        ("GET", "/api/v1/sessions/x%00", None),
        ("DELETE", "/api/v1/sessions/x%00", None),
        ("POST", "/api/v1/sessions", {"pool": "Finanzen\u0000"}),
        ("POST", "/api/v1/admin/hosts/vhost01%00/drain", None),
        ("PATCH", "/api/v1/admin/pools/Finanzen%00", {"max_sessions": 5}),
        ("DELETE", "/api/v1/admin/pools/Finanzen/entitlements/department/IT%00", None),
        ("DELETE", "/api/v1/admin/policies/priority-classes/Stab%00", None),
        ("DELETE", f"/api/v1/admin/policies/schedules/{2**31}", None),
    ]
    for method, url, body in requests:
        answer = await client.request(method, url, json=body, headers=admin)
        assert 400 <= answer.status_code < 500, (method, url, answer.status_code, answer.text)
