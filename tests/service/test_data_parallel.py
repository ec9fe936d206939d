"""Data-parallel trials: a trial trained over several Ray workers (one torch.distributed group),
each taking its share of every global batch, learns as the same trial on one worker does."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import ServiceProcess, wait_for_job_at
from tests.service.conftest import wait_for_job

SPEC = {"workload": "mlp-digits", "strategy": "manual", "epochs": 4, "batch_size": 64, "seed": 3,
        "configs": [{"lr": 0.05, "optimizer": "sgd", "schedule": "cosine"}]}


def _final_loss(metrics: list[dict]) -> float:
    return metrics[-1]["val_loss"]


def test_two_workers_train_as_one_does(client: TestClient) -> None:
    one = wait_for_job(client, client.post("/api/v1/jobs", json=SPEC).json()["id"])
    two = wait_for_job(client, client.post("/api/v1/jobs", json={**SPEC, "resources": {"workers": 2}}).json()["id"])
    assert one["status"] == two["status"] == "completed", (one, two)
    (single,) = client.get(f"/api/v1/jobs/{one['id']}/trials").json()["items"]
    (pair,) = client.get(f"/api/v1/jobs/{two['id']}/trials").json()["items"]
    assert single["workers"] is None
    assert [w["rank"] for w in pair["workers"]] == [0, 1] and len({w["pid"] for w in pair["workers"]}) == 2
    a = client.get(f"/api/v1/jobs/{one['id']}/trials/0/metrics").json()["items"]
    b = client.get(f"/api/v1/jobs/{two['id']}/trials/0/metrics").json()["items"]
    assert [m["step"] for m in a] == [m["step"] for m in b] == [23, 46, 69, 92]  # the same global steps
    assert abs(_final_loss(b) - _final_loss(a)) < 0.02 * _final_loss(a)


@pytest.mark.parametrize(("resources", "batch_size", "words"), [
    ({"workers": 3}, 64, "evenly"),
    ({"workers": 4}, 64, "at most 2"),  # the shared local Ray has 2 CPUs
    ({"workers": 0}, 64, "greater than or equal to 1"),
])
def test_a_data_parallel_request_that_cannot_run_is_a_422(client: TestClient, resources: dict, batch_size: int,
                                                          words: str) -> None:
    response = client.post("/api/v1/jobs", json={**SPEC, "batch_size": batch_size, "resources": resources})
    assert response.status_code == 422 and "resources" in response.text and words in response.text, response.text
    assert client.get("/api/v1/jobs").json()["total"] == 0


def test_a_data_parallel_trial_spans_two_nodes(db_url: str, two_node_cluster: tuple[str, dict[str, str]],
                                               tmp_path: Path) -> None:
    address, env = two_node_cluster
    service = ServiceProcess(db_url, env={**env, "RAY_ADDRESS": address}, log_path=tmp_path / "serve.log").start()
    try:
        ids = [httpx.post(f"{service.url}/api/v1/jobs", json={**SPEC, "resources": {"workers": w}}).json()["id"]
               for w in (1, 2)]
        jobs = [wait_for_job_at(service.url, job_id) for job_id in ids]
        assert [j["status"] for j in jobs] == ["completed", "completed"], jobs
        (pair,) = httpx.get(f"{service.url}/api/v1/jobs/{ids[1]}/trials").json()["items"]
        assert len({w["node"] for w in pair["workers"]}) == 2  # one CPU per node: a rank on each
        losses = [httpx.get(f"{service.url}/api/v1/jobs/{i}/trials/0/metrics").json()["items"][-1]["val_loss"]
                  for i in ids]
        assert abs(losses[1] - losses[0]) < 0.02 * losses[0]
    finally:
        service.stop()
