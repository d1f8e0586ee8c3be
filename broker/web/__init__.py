"""The staff and admin portal: server-rendered pages under `/`.

German by default, English on request; no script in the pages themselves (a
small static file does the little there is), so a strict Content-Security-Policy
holds. `install` adds the pages, the static files and the handlers that answer
"log in first", "administrators only" and "form refused" as pages.
"""

from __future__ import annotations

from fastapi import FastAPI

from broker.web import admin_audit, admin_pages, admin_policies, auth_pages, staff_pages, static
from broker.web.access import install_handlers


def install(app: FastAPI) -> None:
    for module in (auth_pages, staff_pages, admin_pages, admin_policies, admin_audit, static):
        app.include_router(module.router)
    install_handlers(app)
