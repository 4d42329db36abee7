"""The page for people: `GET /` and its three assets, files of this package, behind strict headers.

The page is a static client of the API and nothing more: its script calls `/readyz` and `/predict` of this
origin only, so a visitor sees what the API would answer a `curl` and nothing else about the model. The
files are read once from the installed package (what the tests drove is what an image serves), answered
from memory on four fixed routes (no path parameter: nothing to traverse, nothing listed), and registered
by `create_app` only when VREYESAM_PAGE is on; off, `/` and the assets are 404 like any unknown route.

Headers on every page answer: a Content-Security-Policy allowing script, style and fetches from this
origin only (no inline code, no other host), images from this origin and from `blob:` (results are shown
from the answer's PNG bytes), framing only by this origin and by huggingface.co (a Space page embeds its
app in an iframe); `nosniff`; no referrer; an ETag, so a browser revalidates instead of downloading again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import Response

# Where a Hugging Face Space page (https://huggingface.co/spaces/OWNER/NAME) embeds its app from.
SPACE_EMBEDDER = "https://huggingface.co"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        f"frame-ancestors 'self' {SPACE_EMBEDDER}",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate with the ETag: a new release is seen at once
}


@dataclass(frozen=True)
class Asset:
    route: str
    file: str  # under runtime/http/page/ (package data)
    media_type: str


ASSETS = (
    Asset("/", "index.html", "text/html; charset=utf-8"),
    Asset("/page.js", "page.js", "text/javascript; charset=utf-8"),
    Asset("/page.css", "page.css", "text/css; charset=utf-8"),
    Asset("/sample-eye.png", "sample-eye.png", "image/png"),
)
ROUTES = frozenset(asset.route for asset in ASSETS)


def read_asset(name: str) -> bytes:
    """One page file's bytes, from the installed package."""
    return resources.files(__package__).joinpath("page", name).read_bytes()


def _endpoint(body: bytes, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {**SECURITY_HEADERS, "ETag": etag}

    async def serve(request: Request) -> Response:
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=media_type, headers=headers)

    return serve


def add_page(app: FastAPI) -> None:
    """Register the page's four GET routes on `app` (its files are read now, once)."""
    for asset in ASSETS:
        app.add_api_route(
            asset.route,
            _endpoint(read_asset(asset.file), asset.media_type),
            methods=["GET"],
            include_in_schema=False,
        )
