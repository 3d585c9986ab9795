"""GET /api/ui: the web page that starts a job and watches it (http_api/ui/: plain HTML, CSS and
JavaScript, no build step), served by the app itself so it deploys with it.

The page is served anonymously and holds nothing secret: it asks the person for the function
key, keeps it in the tab's sessionStorage and sends it as ``x-functions-key`` with each API call
(docs/job-contract.md, "The web page"). Serving it behind the key instead would put the key in
the page's URL (``?code=``), and so in the browser's history and in every log that records URLs.

Every answer carries a strict Content-Security-Policy: scripts and styles from the page's own
origin only (no inline code at all), API calls to its own origin only, images from the image
store's origin only (the read links the status answer hands out), no frames, no plugins, no
form posting anywhere (the page posts with fetch; a form that JavaScript did not take over must
not put a prompt in a URL). The files are read once per worker and answered with an ETag and
``Cache-Control: no-cache``: without a build step their names carry no content hash, so a
browser revalidates each time (a 304 when unchanged) and a new deployment shows at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from http_api.errors import NoSuchRoute

UI_DIR = Path(__file__).resolve().parent / "ui"
INDEX = "index.html"
# Every file the page has, and its media type: nothing else under /api/ui is answered.
MEDIA_TYPES = {
    INDEX: "text/html",
    "app.js": "text/javascript",
    "style.css": "text/css",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    mimetype: str
    etag: str


def load_assets(folder: Path = UI_DIR) -> dict[str, Asset]:
    """The page's files from ``folder``, each with a strong ETag of its content."""
    assets = {}
    for name, mimetype in MEDIA_TYPES.items():
        body = (folder / name).read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[name] = Asset(body=body, mimetype=mimetype, etag=etag)
    return assets


# Read at import: the files are part of the deployment and never change under a worker.
ASSETS = load_assets()


def content_security_policy(image_origin: str) -> str:
    """The page's policy: its own scripts, styles and API; images from the store only."""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {image_origin}",
            "connect-src 'self'",
            "form-action 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "require-trusted-types-for 'script'",
        )
    )


def security_headers(image_origin: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(image_origin),
        "X-Content-Type-Options": "nosniff",
        # The page's URL is nobody's business, the image store's least of all.
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def serve(
    req: func.HttpRequest, image_origin: str, assets: dict[str, Asset] = ASSETS
) -> func.HttpResponse:
    """GET /api/ui/{file?}: the page at ``/api/ui/``, its files beside it.

    ``/api/ui`` without the slash is redirected to ``/api/ui/``, so the page's relative links
    (``app.js``, ``../images``) resolve under any route prefix. A name the page does not have is
    NoSuchRoute (the JSON 404 of every unknown path)."""
    name = str(req.route_params.get("file") or "")
    if not name:
        path = urlsplit(str(req.url)).path
        if not path.endswith("/"):
            # Relative to /api/ui, "ui/" is /api/ui/: no host name taken from the request.
            return func.HttpResponse(
                status_code=308,
                headers={"Location": "ui/", **security_headers(image_origin)},
            )
        name = INDEX
    asset = assets.get(name)
    if asset is None:
        raise NoSuchRoute(f"ui/{name}"[:200])
    headers = {
        **security_headers(image_origin),
        "ETag": asset.etag,
        "Cache-Control": "no-cache",
    }
    if _matches(req.headers.get("if-none-match"), asset.etag):
        return func.HttpResponse(status_code=304, headers=headers)
    return func.HttpResponse(
        asset.body, status_code=200, mimetype=asset.mimetype, charset="utf-8", headers=headers
    )


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak comparison, as RFC 9110 has it
    for If-None-Match)."""
    if not if_none_match:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags
