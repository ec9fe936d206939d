"""Every built-in workload runs a job to completion through the service."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import wait_for_job
from workers.registry import BUILTIN_WORKLOADS


@pytest.mark.parametrize("workload", list(BUILTIN_WORKLOADS))
def test_every_builtin_workload_completes_a_job(client: TestClient, workload: str) -> None:
    spec = {"workload": workload, "strategy": "grid", "epochs": 3,
            "space": {"lr": {"values": [0.003, 0.03]}, "optimizer": ["adam"]}}
    job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
    assert job["status"] == "completed" and job["trial_counts"]["completed"] == 2, job
    for number in (0, 1):
        metrics = client.get(f"/api/v1/jobs/{job['id']}/trials/{number}/metrics").json()["items"]
        assert len(metrics) == 3
        if workload != "synthetic":  # classification reports accuracy; the synthetic regression does not
            assert all(0.0 <= m["val_accuracy"] <= 1.0 for m in metrics)
        else:
            assert all(m["val_accuracy"] is None for m in metrics)
    assert job["best"]["val_loss"] < 10
