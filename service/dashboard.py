"""The web dashboard, served by the service itself: no build step, nothing fetched from elsewhere.

- ``GET /``                      the jobs list, with a form that submits a job
- ``GET /jobs/{id}``             a job's page: live trial table and plots
- ``GET /static/{name}``         the dashboard's scripts and styles (``service/static/``) and
                                 ``plotly.min.js``, read from the installed ``plotly`` package
- ``GET /dashboard-api/jobs/{id}/curves``  every trial's per-epoch metrics in one query (the job
                                 page's plots; the REST API has one request per trial)
- ``GET /dashboard-api/jobs/{id}/summary``  a big job's plots, built on the server (a sample of
                                 its trials, the best-so-far line, curves by lr band)
- ``GET /dashboard-api/jobs/{id}/trials``   a page of a big job's trial table, sorted on the server

The pages are shells: the scripts fill them from the REST API under ``/api/v1``. What the server
writes into the HTML (a job's name, the page's settings) goes through :func:`html.escape`.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from lrsearch.service import __version__
from lrsearch.service.api import API_PREFIX
from lrsearch.service.api.trials import TrialStatus
from lrsearch.service.crud import TrialOrder, job_objective, trials_page
from lrsearch.service.ingest import stored_value
from lrsearch.service.job_summary import plot_number, summary
from lrsearch.service.models import Job, Metric, Trial

router = APIRouter(include_in_schema=False)

_HERE = Path(__file__).resolve().parent
STATIC_DIR = _HERE / "static"
TEMPLATES_DIR = _HERE / "templates"

# Rows one curves answer holds at most, and trials one incremental request may name.
CURVES_MAX_ROWS = 200_000
CURVES_MAX_TRIALS = 200
# Rows of a big job's trial table per page.
TABLE_PAGE = 50

# No inline script runs: the scripts are files under /static. (The plots are SVG; Plotly's WebGL traces,
# which would need 'unsafe-eval' for regl, are not used.) Plotly sets inline styles.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'")
_PAGE_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
                 "Referrer-Policy": "same-origin", "Cache-Control": "no-cache"}
_LONG_CACHE = "public, max-age=31536000, immutable"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


# -- static files ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    digest: str  # the ?v= of the URLs that reference it: a new file, a new URL
    gzipped: bytes | None = None


def plotly_js_path() -> Path:
    """``plotly.min.js`` as the installed ``plotly`` Python package bundles it (not imported, only located)."""
    spec = importlib.util.find_spec("plotly")
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / "package_data" / "plotly.min.js"
        if path.is_file():
            return path
    raise FileNotFoundError("plotly.min.js not found: is the `plotly` package installed?")


def _asset(body: bytes, media_type: str, compress: bool) -> Asset:
    digest = hashlib.sha256(body).hexdigest()[:12]
    gz = gzip.compress(body, 6, mtime=0) if compress and len(body) > 1024 else None
    return Asset(body, media_type, digest, gz)


@lru_cache(maxsize=1)
def _assets() -> dict[str, Asset]:
    out = {}
    for path in sorted(STATIC_DIR.iterdir()) if STATIC_DIR.is_dir() else []:
        if path.is_file() and not path.name.startswith("."):
            media = _TYPES.get(path.suffix, "application/octet-stream")
            out[path.name] = _asset(path.read_bytes(), media, compress=path.suffix in (".js", ".css", ".svg"))
    return out


@lru_cache(maxsize=1)
def _plotly_asset() -> Asset:
    return _asset(plotly_js_path().read_bytes(), _TYPES[".js"], compress=True)


@cache
def _docs_asset(name: str) -> Asset:
    from lrsearch.service.api_docs import docs_asset_bytes

    return _asset(docs_asset_bytes(name), _TYPES[Path(name).suffix], compress=True)


def _find_asset(name: str) -> Asset | None:
    """A file under /static: the dashboard's own, Plotly's, or the API docs' (Swagger UI, ReDoc)."""
    from lrsearch.service.api_docs import DOCS_ASSETS

    if name == "plotly.min.js":
        return _plotly_asset()
    if name in DOCS_ASSETS:
        return _docs_asset(name)
    return _assets().get(name)


def static_url(root: str, name: str) -> str:
    asset = _find_asset(name)
    assert asset is not None, name
    return f"{root}/static/{name}?v={asset.digest}"


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
def static_file(name: str, request: Request) -> Response:
    asset = _find_asset(name)
    if asset is None:  # only the files the directory holds: no paths, no traversal
        raise HTTPException(404, f"no static file {name!r}")
    headers = {"Cache-Control": _LONG_CACHE, "X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding",
               "ETag": f'"{asset.digest}"'}
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    if asset.gzipped is not None and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(asset.gzipped, media_type=asset.media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(asset.body, media_type=asset.media_type, headers=headers)


# -- pages -----------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_PARTIAL = re.compile(r"\{\{>\s*([\w.]+)\s*\}\}\n?")  # {{> _head.html }}: another template, inlined


@cache
def _template(name: str) -> str:
    """A template's text with its partials inlined (they share the placeholders of the page)."""
    text = (TEMPLATES_DIR / name).read_text(encoding="utf-8")
    return _PARTIAL.sub(lambda m: _template(m.group(1)), text)


def render(name: str, **values: Any) -> str:
    """Fill ``{{ key }}`` in a template; every value is HTML-escaped (quotes too: safe in attributes).

    A callable value is called only where the template uses it."""

    def sub(m: re.Match[str]) -> str:
        value = values[m.group(1)]
        return html.escape(str(value() if callable(value) else value), quote=True)

    return _PLACEHOLDER.sub(sub, _template(name))


def strategy_form_facts(strategy: Any) -> dict[str, Any]:
    """What the submit form needs to know of a strategy (it never switches on names)."""
    return {"name": strategy.name, "grid": strategy.grid, "takes_configs": strategy.takes_configs,
            "budget": strategy.default_max_trials is not None}


def _page_config(request: Request, **extra: Any) -> str:
    """What the scripts need from the server, as JSON (escaped into a data- attribute by :func:`render`)."""
    from lrsearch.search import STRATEGIES
    from lrsearch.search.catalog import OPTIMIZERS, SCHEDULES, required_params

    root = request.scope.get("root_path", "").rstrip("/")
    return json.dumps({"root": root, "api": root + API_PREFIX, "dashboardApi": root + "/dashboard-api",
                       "strategies": [strategy_form_facts(cls) for cls in STRATEGIES.values()],
                       "optimizers": list(OPTIMIZERS),
                       # The form's choices: piecewise needs its points, which a form does not ask for.
                       "schedules": [s for s in SCHEDULES if not required_params(s)],
                       "version": __version__, **extra})


def _page(request: Request, template: str, script: str | None, status_code: int = 200,
          **values: Any) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    urls = {key: (lambda name=name: static_url(root, name)) for key, name in
            (("css", "dashboard.css"), ("icon", "favicon.svg"), ("common_js", "common.js"),
             ("plotly_js", "plotly.min.js"), ("page_js", script or "common.js"))}
    body = render(template, root=root, version=__version__, **urls, **values)
    return HTMLResponse(body, status_code=status_code, headers=_PAGE_HEADERS)


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@router.get("/", response_class=HTMLResponse)
def jobs_page(request: Request) -> HTMLResponse:
    return _page(request, "jobs.html", "jobs.js", page_title="Jobs", config=_page_config(request, page="jobs"))


@router.get("/jobs", response_class=RedirectResponse)
def jobs_redirect(request: Request) -> RedirectResponse:
    return RedirectResponse(request.scope.get("root_path", "").rstrip("/") + "/", status_code=307)


def _digits(raw: str, most: int = 19) -> bool:
    return 0 < len(raw) <= most and raw.isascii() and raw.isdigit()


def _job_id(raw: str) -> int | None:
    return int(raw) if _digits(raw) and 1 <= int(raw) <= 2**63 - 1 else None


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, request: Request, session: SessionDep) -> HTMLResponse:
    jid = _job_id(job_id)
    job = session.get(Job, jid) if jid is not None else None
    if job is None:
        return _page(request, "message.html", None, status_code=404, page_title="Job not found",
                     message=f"There is no job {job_id}.")
    # A big job's page shows the server's summary of its trials and pages its table on the server.
    summary_above = request.app.state.settings.dashboard_summary_trials
    trials = job.total_trials or session.scalar(select(func.count()).select_from(Trial).where(Trial.job_id == job.id))
    return _page(request, "job.html", "job.js", job_id=job.id, job_name=job.name, page_title=job.name,
                 job_status=job.status,
                 config=_page_config(request, page="job", jobId=job.id, summary=(trials or 0) > summary_above,
                                     summaryAbove=summary_above, tablePage=TABLE_PAGE))


# -- the one dashboard JSON endpoint ---------------------------------------------------------
def _num7(x: Any) -> float | None:
    """Curves' values at 7 significant digits: a trial's own curve is drawn as it is."""
    return plot_number(x, 7)


def _parse_trials(raw: str) -> dict[int, int]:
    """``"3:5,7:0"`` -> {3: 5, 7: 0}: trial number -> first epoch wanted."""
    out: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        number, _, epoch = part.partition(":")
        if not _digits(number, 10) or (epoch and not _digits(epoch, 10)):
            raise HTTPException(422, f"trials: expected 'number:epoch,...', got {part!r}")
        out[int(number)] = int(epoch or 0)
    if len(out) > CURVES_MAX_TRIALS:
        raise HTTPException(422, f"trials: at most {CURVES_MAX_TRIALS} per request")
    return out


@router.get("/dashboard-api/jobs/{job_id}/curves")
def curves(
    job_id: int,
    session: SessionDep,
    trials: Annotated[str | None, Query(max_length=4000, description="'number:first_epoch,...'")] = None,
    start: Annotated[int, Query(ge=0, le=2**31 - 1, description="without trials: from this trial number")] = 0,
    limit: Annotated[int, Query(ge=1, le=CURVES_MAX_ROWS)] = 50_000,
) -> JSONResponse:
    """Per-epoch metrics of many trials in one query, as columns (trial, epoch, train_loss, val_loss, lr, ...).

    With ``trials=3:5,7:0`` only those trials, from those epochs (the incremental form: the page asks
    for what it lacks). Without it, every trial from number ``start`` on, ordered by trial and epoch,
    at most ``limit`` rows; ``more`` says whether rows were left off (ask again from the last trial).
    """
    job = _job_or_404(session, job_id)
    query = (select(Trial.number, Metric.epoch, Metric.train_loss, Metric.val_loss, Metric.val_accuracy, Metric.lr,
                    Metric.step, Metric.extra)
             .join(Trial, Trial.id == Metric.trial_id).where(Trial.job_id == job_id))
    if trials is not None:
        wanted = _parse_trials(trials)
        if not wanted:
            return JSONResponse(_columns([], "val_loss", more=False))
        query = query.where(or_(*(and_(Trial.number == n, Metric.epoch >= e) for n, e in wanted.items())))
    else:
        query = query.where(Trial.number >= start)
    rows = list(session.execute(query.order_by(Trial.number, Metric.epoch).limit(limit + 1)))
    more = len(rows) > limit
    return JSONResponse(_columns(rows[:limit], job_objective(job).metric, more=more))


@router.get("/dashboard-api/jobs/{job_id}/summary")
def job_summary(job_id: int, session: SessionDep,
                since: Annotated[str | None, Query(max_length=64, description="the stamp the page holds")] = None,
                ) -> JSONResponse:
    """What the plots of a big job need (service/job_summary.py); ``{"unchanged": true}`` when the
    page already holds this version (``since`` is its stamp)."""
    answer = summary(session, _job_or_404(session, job_id))
    return JSONResponse({"stamp": answer["stamp"], "unchanged": True} if since == answer["stamp"] else answer)


@router.get("/dashboard-api/jobs/{job_id}/trials")
def trials_table(job_id: int, session: SessionDep,
                 offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = TABLE_PAGE,
                 status: Annotated[TrialStatus | None, Query()] = None,
                 order: Annotated[TrialOrder, Query()] = "number",
                 since: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    """A page of the trial table, as ``GET /api/v1/jobs/{id}/trials`` answers it, with a ``stamp``;
    ``{"unchanged": true}`` when the page already shows it."""
    items, total = trials_page(session, _job_or_404(session, job_id), limit, offset, status, order)
    body = f'{{"items":[{",".join(items)}],"total":{int(total)}'
    stamp = hashlib.sha256(body.encode()).hexdigest()[:16]
    if since == stamp:
        return JSONResponse({"stamp": stamp, "unchanged": True})
    return Response(f'{body},"stamp":"{stamp}"}}', media_type="application/json")


def _job_or_404(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id) if 1 <= job_id <= 2**63 - 1 else None
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    return job


def _columns(rows: list[Any], metric: str, more: bool) -> dict[str, Any]:
    """The rows as columns; ``objective`` is the job's objective metric at each evaluation."""
    return {"trial": [r[0] for r in rows], "epoch": [r[1] for r in rows], "step": [r[6] for r in rows],
            "train_loss": [_num7(r[2]) for r in rows], "val_loss": [_num7(r[3]) for r in rows],
            "val_accuracy": [_num7(r[4]) for r in rows], "lr": [_num7(r[5]) for r in rows],
            "objective": [_num7(stored_value(metric, r[3], r[4], r[7])) for r in rows], "more": more}
