"""``/docs`` (Swagger UI) and ``/redoc`` from files installed with the project, not a CDN: they
work on a machine without internet. The assets come with the ``fastapi-offline`` package and are
served like the dashboard's (``/static/{name}``, cached by digest)."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")
REDOC_CSP = ("default-src 'self'; script-src 'self' blob:; worker-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
             "frame-ancestors 'none'")


# ReDoc draws its maker's logo from a CDN whatever its options; served here, it points nowhere
# (an image that fails to load is hidden) and the page's policy allows no other host anyway.
_REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def docs_asset_bytes(name: str) -> bytes:
    """One of DOCS_ASSETS as the service serves it: nothing in it reaches for another host."""
    body = (docs_assets_dir() / name).read_bytes()
    return body.replace(_REDOC_LOGO, b"data:,") if name == "redoc.standalone.js" else body


@lru_cache(maxsize=1)
def docs_assets_dir() -> Path:
    """Where the installed ``fastapi_offline`` keeps Swagger UI's and ReDoc's files (not imported)."""
    spec = importlib.util.find_spec("fastapi_offline")
    for base in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(base) / "static"
        if all((folder / name).is_file() for name in DOCS_ASSETS):
            return folder
    raise FileNotFoundError("Swagger UI's files not found: is the `fastapi-offline` package installed?")


def _urls(request: Request) -> tuple[str, str]:
    root = request.scope.get("root_path", "").rstrip("/")
    return root, root + (request.app.openapi_url or "/openapi.json")


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    from lrsearch.service.dashboard import static_url

    root, openapi = _urls(request)
    return get_swagger_ui_html(openapi_url=openapi, title="lrsearch API",
                               swagger_js_url=static_url(root, "swagger-ui-bundle.js"),
                               swagger_css_url=static_url(root, "swagger-ui.css"),
                               swagger_favicon_url=static_url(root, "favicon.svg"))


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    from lrsearch.service.dashboard import static_url

    root, openapi = _urls(request)
    page = get_redoc_html(openapi_url=openapi, title="lrsearch API", redoc_js_url=static_url(root, "redoc.standalone.js"),
                          redoc_favicon_url=static_url(root, "favicon.svg"), with_google_fonts=False)
    page.headers["Content-Security-Policy"] = REDOC_CSP
    return page
