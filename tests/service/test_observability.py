"""/metrics: Prometheus text with lrsearch_ metrics that move with the work done."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.service.conftest import wait_for_job


def scrape(client: TestClient) -> dict[str, dict[tuple, float]]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_follow_a_job(client: TestClient) -> None:
    before = scrape(client)
    assert before["lrsearch_jobs"][(("status", "completed"),)] == 0
    job = client.post("/api/v1/jobs", json={"workload": "synthetic", "strategy": "grid", "epochs": 3,
                                            "space": {"lr": {"values": [0.01, 0.03]}}}).json()
    wait_for_job(client, job["id"])
    after = scrape(client)
    assert after["lrsearch_jobs"][(("status", "completed"),)] == 1
    assert after["lrsearch_trials"][(("status", "completed"),)] == 2
    assert after["lrsearch_epochs_trained_total"][()] - before["lrsearch_epochs_trained_total"][()] == 6
    assert after["lrsearch_trial_duration_seconds_count"][()] >= 2
    latency = after["lrsearch_http_request_duration_seconds_count"]
    assert any(dict(k).get("route") == "/api/v1/jobs/{job_id}" for k in latency)
