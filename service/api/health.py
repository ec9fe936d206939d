"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from lrsearch.service import __version__
from lrsearch.service.api import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["health"])


liveness = APIRouter(tags=["health"])


@liveness.get("/livez")
def livez() -> JSONResponse:
    """The process answers: for probes, with no key even under --auth, and revealing nothing else
    (readiness, with the database and Ray, is /api/v1/healthz)."""
    return JSONResponse({"status": "ok"})


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    state = request.app.state
    try:
        with state.sessions() as s:
            s.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        database = f"error: {type(exc).__name__}"
    ray_state = state.executor.describe() if state.executor is not None else "disabled"
    ok = database == "ok" and (state.executor is None or ray_state.startswith("connected"))
    body = {"status": "ok" if ok else "unavailable", "database": database, "ray": ray_state,
            "version": __version__}
    return JSONResponse(body, status_code=200 if ok else 503)
