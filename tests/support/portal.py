"""Reading portal pages in tests: form tokens, notices, and the CSP rules a page keeps."""

from __future__ import annotations

import html as markup
import re
from typing import Any

import httpx

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)

_TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')


def csrf_of(html: str) -> str:
    """The CSRF field of the first form on a page."""
    found = _TOKEN.search(html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


def notice_of(html: str) -> str:
    """The text of the page's notice (after a form), without markup."""
    found = re.search(r'<div class="notice [a-z]+" role="[a-z]+">(.*?)</div>', html, re.S)
    assert found, "no notice on the page"
    return " ".join(markup.unescape(re.sub(r"<[^>]+>", "", found.group(1))).split())


def assert_no_inline_code(html: str) -> None:
    """What the page CSP would block, and what would weaken it if allowed: inline
    scripts, event handler attributes, javascript: URLs, inline styles."""
    for script in re.findall(r"<script\b[^>]*>", html, re.I):
        assert re.search(r'\bsrc="/static/', script), f"inline script: {script}"
    assert not re.search(r"<script\b[^>]*>(?!</script>)", html, re.I), "script with a body"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "inline event handler"
    assert "javascript:" not in html.lower()
    assert not re.search(r"\sstyle\s*=", html, re.I), "inline style attribute"
    assert not re.search(r"<style\b", html, re.I), "style element"


def assert_page_headers(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == PAGE_CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"].startswith("text/html")


async def post_form(
    client: httpx.AsyncClient, page: str, action: str, data: dict[str, Any] | None = None
) -> httpx.Response:
    """Send a form the way a browser does: the CSRF field from the page it is on."""
    html = (await client.get(page)).text
    return await client.post(action, data={"csrf_token": csrf_of(html), **(data or {})})
