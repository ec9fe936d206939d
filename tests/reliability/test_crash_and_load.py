"""Real processes under stress: readers hammering the API while a job runs, SIGKILL of the service
mid-job, and PostgreSQL dropping the service's connections."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_HOST, PG_PORT, PG_USER, ServiceProcess

pytestmark = pytest.mark.restarts  # `make test-restarts`

SPEC = {"name": "twelve", "workload": "mlp-digits", "strategy": "random", "max_trials": 12, "max_concurrent": 2,
        "epochs": 6, "seed": 11, "space": {"lr": {"low": 1e-3, "high": 0.3}, "optimizer": ["sgd", "adam"]}}
ENV = {"LRSEARCH_LEASE_SECONDS": "3", "LRSEARCH_POLL_INTERVAL": "0.2"}


class Readers:
    """Threads that read the API as fast as they can; any non-200 or transport error is kept."""

    def __init__(self, url: str, job_id: int, count: int = 4) -> None:
        self.url, self.job_id = url, job_id
        self.errors: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def _run(self, i: int) -> None:
        paths = ["/api/v1/jobs", f"/api/v1/jobs/{self.job_id}", f"/api/v1/jobs/{self.job_id}/trials",
                 f"/api/v1/jobs/{self.job_id}/trials/0/metrics", "/metrics", f"/api/v1/jobs/{self.job_id}/best"]
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self._stop.is_set():
                path = paths[(n + i) % len(paths)]
                n += 1
                try:
                    r = client.get(path)
                    ok = r.status_code == 200 or (r.status_code == 404 and path.endswith(("/best", "/metrics")))
                    if not ok:
                        self.errors.append(f"{path}: {r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.errors.append(f"{path}: {type(exc).__name__}: {exc}")
                self.requests += 1

    def __enter__(self) -> Readers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def finished_trials_raw(url: str, job_id: int) -> dict[int, bytes]:
    """The exact bytes the API answers for each finished trial's metrics."""
    trials = httpx.get(f"{url}/api/v1/jobs/{job_id}/trials").json()["items"]
    return {t["number"]: httpx.get(f"{url}/api/v1/jobs/{job_id}/trials/{t['number']}/metrics").content
            for t in trials if t["status"] == "completed"}


def wait_status(url: str, job_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (job := httpx.get(f"{url}/api/v1/jobs/{job_id}").json())["status"] not in ("completed", "failed",
                                                                                      "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    return job


def test_readers_see_no_error_and_sigkill_loses_nothing(db_url: str, tmp_path: Path) -> None:
    service = ServiceProcess(db_url, env=ENV, log_path=tmp_path / "serve.log").start()
    try:
        job_id = httpx.post(f"{service.url}/api/v1/jobs", json=SPEC).json()["id"]
        with Readers(service.url, job_id) as readers:
            deadline = time.monotonic() + 120
            while httpx.get(f"{service.url}/api/v1/jobs/{job_id}").json()["trial_counts"]["completed"] < 4:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert readers.errors == [], readers.errors[:5]
        assert readers.requests > 100
        before = finished_trials_raw(service.url, job_id)
        service.kill(signal.SIGKILL, group=True)
    finally:
        service.stop()

    service = ServiceProcess(db_url, env=ENV, log_path=tmp_path / "serve.log").start()
    try:
        with Readers(service.url, job_id) as readers:
            job = wait_status(service.url, job_id, 240)
        assert readers.errors == [], readers.errors[:5]
        assert job["status"] == "completed" and job["trial_counts"]["completed"] == SPEC["max_trials"]
        trials = httpx.get(f"{service.url}/api/v1/jobs/{job_id}/trials").json()["items"]
        assert [t["number"] for t in trials] == list(range(SPEC["max_trials"]))
        after = finished_trials_raw(service.url, job_id)
        assert len(after) == SPEC["max_trials"]
        for number, raw in before.items():
            assert after[number] == raw  # byte for byte
        for raw in after.values():
            epochs = [m["epoch"] for m in httpx.Response(200, content=raw).json()["items"]]
            assert epochs == list(range(SPEC["epochs"]))
    finally:
        service.stop()


def test_postgres_connection_loss_loses_no_row(db_url: str, tmp_path: Path) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    import psycopg

    dbname = db_url.rsplit("/", 1)[1]
    service = ServiceProcess(db_url, env=ENV, log_path=tmp_path / "serve.log").start()
    try:
        job_id = httpx.post(f"{service.url}/api/v1/jobs", json={**SPEC, "max_trials": 8, "epochs": 15}).json()["id"]
        killed = 0
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as admin:
            for _ in range(6):
                time.sleep(0.7)
                killed += admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name = 'lrsearch' AND pid <> pg_backend_pid()",
                    (dbname,)).fetchone()[0]
        assert killed > 0
        job = wait_status(service.url, job_id, 240)
        assert job["status"] == "completed", job
        trials = httpx.get(f"{service.url}/api/v1/jobs/{job_id}/trials").json()["items"]
        assert [t["number"] for t in trials] == list(range(8))
        for t in trials:
            assert t["status"] == "completed", t
            metrics = httpx.get(f"{service.url}/api/v1/jobs/{job_id}/trials/{t['number']}/metrics").json()["items"]
            assert [m["epoch"] for m in metrics] == list(range(15))
    finally:
        service.stop()
