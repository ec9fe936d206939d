from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrsearch.service.app import create_app
from lrsearch.service.config import Settings
from tests.conftest import ServiceProcess, once, stop_after_last_use


@pytest.fixture
def client(app_db_url: str, ray_executor: Any, tmp_path: Path) -> Iterator[TestClient]:
    """The real app (lifespan, migrations, job runner) on a fresh store and the shared local Ray."""
    settings = Settings(database_url=app_db_url, poll_interval=0.1, data_dir=str(tmp_path / "data"))
    with TestClient(create_app(settings, executor=ray_executor)) as c:
        yield c


@pytest.fixture(scope="session")
def shared_service(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """A real ``lrsearch serve`` (SQLite file, its own local Ray) for tests that only submit jobs and
    read them back, over HTTP and the CLI (test_cli, test_export): started once, for it takes some
    10 s, and stopped after the last test that uses it. Nothing here kills it or needs its store
    empty; tests that do start their own."""
    tmp = tmp_path_factory.mktemp("shared-service")
    # At the info level, as a user runs it: test_cli reads its access log.
    service = ServiceProcess(f"sqlite:///{tmp / 'lrsearch.db'}", log_path=tmp / "serve.log",
                             extra_args=["--log-level", "info"]).start()
    stop = once(service.stop)
    stop_after_last_use(request, Path(__file__).parent, stop)
    try:
        yield service
    finally:
        stop()


@pytest.fixture
def api_only(app_db_url: str) -> Iterator[TestClient]:
    """The real app without a job runner, on a fresh store: for what the HTTP layer alone decides."""
    with TestClient(create_app(Settings(database_url=app_db_url, run_jobs=False))) as c:
        yield c


def wait_for_job(client: TestClient, job_id: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "cancelled", "failed"):
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not finish: {job}")
