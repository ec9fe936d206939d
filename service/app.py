"""The FastAPI application: a lifespan that owns the engine, Ray and the job runner."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lrsearch.search import SpecError
from lrsearch.service import __version__
from lrsearch.service.api import health, jobs, keys, trials, workloads
from lrsearch.service.auth import AuthMiddleware, KeyVerifier, SubmitRateLimit
from lrsearch.service.config import Settings
from lrsearch.service.db import make_engine, make_session_factory, upgrade
from lrsearch.service.observability import CONTENT_TYPE as METRICS_CONTENT_TYPE
from lrsearch.service.observability import RequestLatency, ServiceMetrics
from lrsearch.workers.executor import Executor

if TYPE_CHECKING:
    from lrsearch.workers.ray_executor import RayExecutor

log = logging.getLogger(__name__)

def _loc_text(loc: Any) -> str:
    return ".".join(str(p) for p in loc if p != "body")


class ErrorResponse(JSONResponse):
    """JSON escaped to ASCII: an error names the field, and a field name taken from the request may be
    text UTF-8 cannot encode (a lone surrogate, legal in JSON); escaped, it is still the name sent."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _unprocessable(errors: list[dict[str, Any]]) -> JSONResponse:
    """A 422 listing every error ({loc, msg, type}, as FastAPI's own), and a message joining them."""
    message = "; ".join(f"{where}: {e['msg']}" if (where := _loc_text(e["loc"])) else e["msg"] for e in errors)
    return ErrorResponse({"detail": errors, "message": message}, status_code=422)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    return _unprocessable([{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""),
                            "type": e.get("type", "value_error")} for e in exc.errors()])


async def _spec_error(_request: Request, exc: SpecError) -> JSONResponse:
    return _unprocessable([{"loc": ["body", *e.loc], "msg": e.message, "type": e.type} for e in exc.errors])


class BodySizeLimit:
    """Answer 413 for a body over the cap before anything parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
        if length is not None:
            if length > self.max_bytes:
                await self._reject(send)
                return
            await self.app(scope, receive, send)
            return
        # No length given (chunked): read up to the cap before the app sees a byte, then replay.
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._reject(send)
                return
            if not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replay_receive() -> Any:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replay_receive, send)

    async def _reject(self, send: Send) -> None:
        body = f'{{"detail": "request body over {self.max_bytes} bytes"}}'.encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


_announced: set[str] = set()


def workload_runtime_env(settings: Settings) -> dict[str, Any] | None:
    """What Ray's workers need to load the workload path's packages: the packages themselves and
    the names they define (None without a workload path)."""
    if not settings.workload_path:
        return None
    from lrsearch.workers.registry import WORKLOAD_MODULES_ENV, use_workload_path

    packages = use_workload_path(settings.workload_path)
    # `lrsearch serve` asks before it starts Ray, and the app again: say it once.
    (log.debug if settings.workload_path in _announced else log.info)(
        "workload path %s: %s", settings.workload_path, os.environ[WORKLOAD_MODULES_ENV])
    _announced.add(settings.workload_path)
    if not packages:
        return None
    return {"py_modules": packages, "env_vars": {WORKLOAD_MODULES_ENV: os.environ[WORKLOAD_MODULES_ENV]}}


def start_executor(settings: Settings, runtime_env: dict[str, Any] | None) -> RayExecutor:
    """The service's own Ray executor, connected (a local Ray, or the cluster at ``ray_address``,
    joined as a zero-CPU node where this machine is not one) and its first actors started. Raises
    RayUnavailable naming the fix."""
    from lrsearch.workers.ray_executor import RayExecutor

    executor = RayExecutor(settings.ray_address, settings.num_cpus, settings.object_store_bytes,
                           runtime_env=runtime_env, wait_seconds=settings.startup_wait_seconds)
    executor.start()
    try:
        if settings.prewarm_actors:
            executor.prewarm(settings.prewarm_actors)
    except BaseException:
        executor.shutdown()
        raise
    return executor


def create_app(settings: Settings | None = None, executor: Executor | None = None) -> FastAPI:
    """The app. Pass ``executor`` to share one (a Ray connection and its actor pool, or an
    in-process executor); it is then not shut down. Without one it starts its own Ray."""
    settings = settings or Settings()
    # Before anything validates a spec: the workload path's names are known from here on.
    runtime_env = workload_runtime_env(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        if settings.auto_upgrade:
            upgrade(engine)
        app.state.engine = engine
        app.state.sessions = make_session_factory(engine)
        app.state.metrics.bind(app.state.sessions)
        app.state.verifier = KeyVerifier(app.state.sessions)
        app.state.executor = None
        app.state.runner = None
        owned_executor = None
        try:
            if settings.run_jobs:
                from lrsearch.service.runner import JobRunner

                if executor is None:
                    owned_executor = start_executor(settings, runtime_env)
                runner = JobRunner(app.state.sessions, executor or owned_executor, settings,  # type: ignore[arg-type]  # one of them is set
                                   metrics=app.state.metrics)
                runner.start()
                app.state.executor, app.state.runner = executor or owned_executor, runner
            log.info("lrsearch %s serving; database %s", __version__, engine.url.render_as_string())
            yield
        finally:
            # Also when start-up fails half way: a Ray this service started never outlives it.
            if app.state.runner is not None:
                app.state.runner.stop()
            if owned_executor is not None:
                owned_executor.shutdown()
            engine.dispose()

    from lrsearch.search import STRATEGIES

    # /docs and /redoc are served from installed files (service/api_docs.py), not FastAPI's CDN pages.
    app = FastAPI(title="lrsearch", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=("Distributed learning-rate search over the learning rate, optimizer, schedule and "
                               f"warmup. Strategies: {', '.join(STRATEGIES)}."))
    app.state.settings = settings
    app.state.metrics = ServiceMetrics()
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]  # Starlette types a handler for any Exception
    app.add_exception_handler(SpecError, _spec_error)  # type: ignore[arg-type]  # Starlette types a handler for any Exception
    for module in (health, jobs, trials, workloads, keys):
        app.include_router(module.router)
    app.include_router(health.liveness)
    from lrsearch.service import api_docs, dashboard, login

    app.include_router(api_docs.router)
    app.include_router(dashboard.router)
    app.include_router(login.router)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(app.state.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    app.add_middleware(RequestLatency, metrics=app.state.metrics)
    if settings.auth:
        app.add_middleware(AuthMiddleware, verifier=lambda: app.state.verifier,
                           rate_limit=SubmitRateLimit(settings.submit_rate_per_minute, settings.submit_burst))
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    return app
