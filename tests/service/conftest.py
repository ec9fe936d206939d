from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrsearch.service.app import create_app
from lrsearch.service.config import Settings


@pytest.fixture
def client(db_url: str, ray_executor: Any, tmp_path: Path) -> Iterator[TestClient]:
    """The real app (lifespan, migrations, job runner) on a fresh database and the shared local Ray."""
    settings = Settings(database_url=db_url, poll_interval=0.1, data_dir=str(tmp_path / "data"))
    with TestClient(create_app(settings, executor=ray_executor)) as c:
        yield c


@pytest.fixture
def api_only(db_url: str) -> Iterator[TestClient]:
    """The real app without a job runner: for what the HTTP layer alone decides."""
    with TestClient(create_app(Settings(database_url=db_url, run_jobs=False))) as c:
        yield c


def wait_for_job(client: TestClient, job_id: int, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "cancelled", "failed"):
            return job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} did not finish: {job}")
