"""Every built-in workload runs a job to completion through the service."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lrsearch.workers.registry import BUILTIN_WORKLOADS, workload_metrics
from tests.service.conftest import wait_for_job

# A streaming workload's epoch is a pass over its corpus: it runs a step budget instead.
LENGTH = {"gpt-stdlib": {"steps": 30, "eval_every": 10}}


@pytest.mark.parametrize("workload", list(BUILTIN_WORKLOADS))
def test_every_builtin_workload_completes_a_job(client: TestClient, workload: str) -> None:
    spec = {"workload": workload, "strategy": "grid", **LENGTH.get(workload, {"epochs": 3}),
            "space": {"lr": {"values": [0.003, 0.03]}, "optimizer": ["adam"]}}
    job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
    assert job["status"] == "completed" and job["trial_counts"]["completed"] == 2, job
    reported = workload_metrics(workload)
    for number in (0, 1):
        metrics = client.get(f"/api/v1/jobs/{job['id']}/trials/{number}/metrics").json()["items"]
        assert len(metrics) == 3
        assert all(isinstance(m["step"], int) and m["step"] > 0 for m in metrics)
        assert all(set(reported) <= set(m) for m in metrics)  # every metric it reports, by name
        if "val_accuracy" in reported:  # classification reports accuracy; the others do not
            assert all(0.0 <= m["val_accuracy"] <= 1.0 for m in metrics)
        else:
            assert all(m["val_accuracy"] is None for m in metrics)
    assert job["best"]["val_loss"] < 10
