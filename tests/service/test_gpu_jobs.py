"""A job whose trials ask for a GPU, through the real app (skipped where there is no CUDA device)."""

from __future__ import annotations

import math

import pytest
import torch
from fastapi.testclient import TestClient

from tests.service.conftest import wait_for_job

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("strategy", ["random", "range_test"])
def test_gpu_job_completes_with_fractional_gpus(client: TestClient, strategy: str) -> None:
    spec = {"name": f"gpu-{strategy}", "workload": "cnn-digits", "strategy": strategy, "epochs": 3,
            "max_concurrent": 2, "seed": 0, "resources": {"cpu": 1, "gpu": 0.5},
            "space": {"lr": {"low": 1e-3, "high": 0.1}, "optimizer": ["sgd", "adam"]}}
    if strategy == "range_test":
        spec["space"] = {"optimizer": ["sgd", "adam"]}
        spec["options"] = {"repeats": 1, "num_steps": 60}
    else:
        spec["max_trials"] = 4
    r = client.post("/api/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    job = wait_for_job(client, r.json()["id"], timeout=300)
    assert job["status"] == "completed", job
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert len(trials) == 4 and all(t["status"] == "completed" for t in trials)
    trained = [t for t in trials if "range_test" not in t["config"]]
    assert all(t["epochs"] == 3 for t in trained)
    best = client.get(f"/api/v1/jobs/{job['id']}/best").json()
    assert best["val_loss"] < 0.5 * math.log(10)
