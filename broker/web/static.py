"""The portal's static files (CSS, JavaScript), served with caching headers.

Files are read once from the package. Pages link them with a content hash in
the query (`/static/portal.css?v=1a2b3c4d`), so a browser may keep such a URL for
a year: a changed file gets a new URL. A URL without the current hash must be
revalidated (ETag), so nobody is stuck with an old file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from fastapi import APIRouter, Request, Response

MEDIA_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
FOREVER = "public, max-age=31536000, immutable"
REVALIDATE = "public, no-cache"


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    version: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def _load() -> dict[str, StaticFile]:
    files: dict[str, StaticFile] = {}
    for entry in (resources.files("broker.web") / "static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in MEDIA_TYPES:
            body = entry.read_bytes()
            version = hashlib.sha256(body).hexdigest()[:12]
            files[entry.name] = StaticFile(body, MEDIA_TYPES[suffix], version)
    return files


FILES = _load()
router = APIRouter(include_in_schema=False)


def static_url(name: str) -> str:
    return f"/static/{name}?v={FILES[name].version}"


@router.get("/static/{name}")
async def static_file(name: str, request: Request) -> Response:
    found = FILES.get(name)
    if found is None:
        return Response(status_code=404)
    cache = FOREVER if request.query_params.get("v") == found.version else REVALIDATE
    headers = {"Cache-Control": cache, "ETag": found.etag}
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)
