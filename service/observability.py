"""Prometheus metrics: jobs and trials by status (read from the store at scrape time), epochs
trained, trial durations and API latency. One registry per app, so several apps can live in
one process (tests) without clashing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from lrsearch.service.models import JOB_STATUSES, TRIAL_STATUSES, Job, Trial

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StoreCollector(Collector):
    """Counts by status straight from the store: true across restarts and replicas."""

    def __init__(self, sessions: Callable[[], sessionmaker[Session] | None]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        sessions = self._sessions()
        if sessions is None:
            return
        jobs = GaugeMetricFamily("lrsearch_jobs", "Jobs in the store by status", labels=["status"])
        trials = GaugeMetricFamily("lrsearch_trials", "Trials in the store by status", labels=["status"])
        with sessions() as s:
            job_counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
            trial_counts = dict(s.execute(select(Trial.status, func.count()).group_by(Trial.status)).all())
        for status in JOB_STATUSES:
            jobs.add_metric([status], job_counts.get(status, 0))
        for status in TRIAL_STATUSES:
            trials.add_metric([status], trial_counts.get(status, 0))
        yield jobs
        yield trials


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._sessions: sessionmaker[Session] | None = None
        self.registry.register(_StoreCollector(lambda: self._sessions))
        self.epochs_trained = Counter("lrsearch_epochs_trained", "Epochs trained and stored",
                                      registry=self.registry)
        self.trials_finished = Counter("lrsearch_trials_finished", "Trials finished by this process",
                                       ["status"], registry=self.registry)
        self.trial_duration = Histogram(
            "lrsearch_trial_duration_seconds", "Wall time of a trial, from start to its last epoch",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=self.registry)
        self.request_latency = Histogram(
            "lrsearch_http_request_duration_seconds", "API request latency", ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry)

    def bind(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestLatency:
    """Times every HTTP request, labelled by its route template (not the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request_latency.labels(scope.get("method", ""), template,
                                                str(status["code"])).observe(time.perf_counter() - start)
