"""Model-based search keeps every slot busy: with max_concurrent 2, two trials run most of the time."""

from __future__ import annotations

from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import wait_for_job


def busy_fraction(trials: list[dict], slots: int) -> float:
    """Slot-seconds used by trials over slot-seconds available, across the job's span."""
    spans = [(datetime.fromisoformat(t["started_at"]), datetime.fromisoformat(t["finished_at"])) for t in trials]
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    used = sum((e - s).total_seconds() for s, e in spans)
    return used / (slots * (end - start).total_seconds())


@pytest.mark.parametrize("early_stopping", [None, {"kind": "asha", "grace_epochs": 1, "reduction_factor": 3}])
def test_bayesian_keeps_both_slots_busy(client: TestClient, early_stopping: dict | None) -> None:
    spec = {"workload": "mlp-digits", "strategy": "bayesian", "max_trials": 16, "max_concurrent": 2, "epochs": 8,
            "seed": 1, "early_stopping": early_stopping,
            "space": {"lr": {"low": 1e-4, "high": 1.0}, "optimizer": ["sgd", "adam"],
                      "schedule": ["constant", "cosine"]}}
    job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
    assert job["status"] == "completed"
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert len(trials) == 16 and len({t["number"] for t in trials}) == 16
    fraction = busy_fraction(trials, 2)
    print(f"bayesian early_stopping={early_stopping}: both slots busy {fraction:.0%} of the span")
    assert fraction >= 0.6
