"""The dashboard's sign-in under --auth: the key is checked, then kept in an HttpOnly cookie."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from lrsearch.service.auth import COOKIE, LOGIN_PAGE_HEADERS, login_page

router = APIRouter(include_in_schema=False)


def _safe_next(path: str) -> str:
    # Only a path on this site: never an open redirect.
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


@router.get("/login", response_class=HTMLResponse)
def login_form(next: str = "/") -> HTMLResponse:
    return HTMLResponse(login_page(_safe_next(next)), headers=LOGIN_PAGE_HEADERS)


@router.post("/login", response_model=None)
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    principal = request.app.state.verifier.verify(key) if key else None
    if principal is None:
        return HTMLResponse(login_page(target, "that key is not valid"), status_code=401, headers=LOGIN_PAGE_HEADERS)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        max_age=7 * 24 * 3600, path="/")
    return response


@router.get("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
