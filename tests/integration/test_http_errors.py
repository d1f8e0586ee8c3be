"""Every error is JSON in the contract's shape, an unexpected one too."""

from __future__ import annotations

import httpx

from broker.app import create_app
from broker.runtime import Runtime


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
