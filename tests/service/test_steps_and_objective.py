"""Step budgets and objectives through the service: metric rows per evaluation with their step, and
trials, best, early stopping and exports ranked by the job's own metric."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import wait_for_job

SPACE = {"lr": {"values": [0.001, 0.03, 3.0]}, "optimizer": ["sgd"], "schedule": ["cosine"],
         "warmup_fraction": {"values": [0.2]}}


def _metrics(client: TestClient, job_id: int, number: int) -> list[dict]:
    return client.get(f"/api/v1/jobs/{job_id}/trials/{number}/metrics").json()["items"]


def test_a_step_job_stores_a_row_per_evaluation_with_its_step(client: TestClient) -> None:
    spec = {"workload": "mlp-digits", "strategy": "grid", "steps": 50, "eval_every": 20, "space": SPACE}
    job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
    assert job["status"] == "completed", job
    assert job["spec"]["steps"] == 50 and job["spec"]["epochs"] is None and job["spec"]["eval_every"] == 20
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    for t in trials:
        rows = _metrics(client, job["id"], t["number"])
        if t["status"] == "completed":
            assert [r["step"] for r in rows] == [20, 40, 50] and [r["epoch"] for r in rows] == [0, 1, 2]
            assert t["epochs"] == 3
            # Warmup and cosine run over the 50 steps: the rate at step 40 is below the one at step 20.
            assert rows[2]["lr"] < rows[1]["lr"]
    best = client.get(f"/api/v1/jobs/{job['id']}/best").json()
    assert best["step"] in (20, 40, 50) and best["objective"]["metric"] == "val_loss"


def test_a_step_jobs_early_stopping_counts_steps(client: TestClient) -> None:
    spec = {"workload": "synthetic", "strategy": "random", "max_trials": 6, "steps": 60, "eval_every": 10,
            "space": {"lr": {"low": 1e-4, "high": 1.0}, "optimizer": ["adam"]},
            "early_stopping": {"kind": "asha", "grace_steps": 15, "reduction_factor": 2}}
    created = client.post("/api/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = wait_for_job(client, created.json()["id"])
    assert job["status"] == "completed", job
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    # grace 15 steps is 2 evaluations: rungs at 2 and 4 of the 6 evaluations.
    assert {t["epochs"] for t in trials if t["status"] == "pruned"} <= {1, 2, 4}
    assert any(t["epochs"] == 6 for t in trials)


def test_trials_and_best_rank_by_a_maximised_objective(client: TestClient, tmp_path: Path) -> None:
    spec = {"workload": "mlp-digits", "strategy": "grid", "epochs": 3, "space": SPACE,
            "objective": {"metric": "val_accuracy"}}
    created = client.post("/api/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["objective"] == {"metric": "val_accuracy", "mode": "max"}  # its direction
    job = wait_for_job(client, created.json()["id"])
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    for t in trials:
        accuracies = [r["val_accuracy"] for r in _metrics(client, job["id"], t["number"])
                      if r["val_accuracy"] is not None]
        assert t["objective"] == (max(accuracies) if accuracies else None)
    scored = [t for t in trials if t["objective"] is not None]
    top = max(scored, key=lambda t: (t["objective"], -t["number"]))
    best = client.get(f"/api/v1/jobs/{job['id']}/best").json()
    assert best["trial"] == top["number"] and job["best"]["trial"] == top["number"]
    assert best["objective"] == {"metric": "val_accuracy", "mode": "max", "value": top["objective"]}
    assert best["lr_interval"]["metric"] == "val_accuracy"
    assert best["per_optimizer"]["sgd"]["objective"] == top["objective"]
    table = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/jobs/{job['id']}/export?format=csv").text)))
    assert [float(r["objective"]) if r["objective"] else None for r in table] == [t["objective"] for t in trials]
    # The Optuna export maximises the same metric and finds the same best.
    from lrsearch.service.export import to_optuna_study

    curves = {t["number"]: [r["val_accuracy"] for r in _metrics(client, job["id"], t["number"])] for t in trials}
    study = to_optuna_study(job, trials, curves, f"sqlite:///{tmp_path / 'study.db'}", "accuracy")
    assert study.direction.name == "MAXIMIZE" and study.best_value == top["objective"]
    assert study.best_trial.user_attrs["lrsearch_number"] == top["number"]


def test_a_minimised_accuracy_picks_the_worst_trial(client: TestClient) -> None:
    # The direction is the user's to choose: min on accuracy ranks the other way round.
    spec = {"workload": "mlp-digits", "strategy": "grid", "epochs": 2, "space": SPACE,
            "objective": {"metric": "val_accuracy", "mode": "min"}}
    job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
    trials = [t for t in client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"] if t["objective"] is not None]
    best = client.get(f"/api/v1/jobs/{job['id']}/best").json()
    assert best["objective"]["value"] == min(t["objective"] for t in trials)


@pytest.mark.parametrize(("change", "loc", "words"), [
    ({"objective": {"metric": "val_bpb"}}, "objective.metric", "val_accuracy"),
    ({"objective": {"metric": "val_loss", "mode": "up"}}, "objective.mode", "min"),
    ({"steps": 100, "epochs": 3}, "steps", "not both"),
    ({"eval_every": 10}, "eval_every", "goes with steps"),
    ({"epochs": None, "steps": 100, "eval_every": 101}, "eval_every", "[1, 100]"),
    ({"epochs": None, "steps": 0}, "steps", "integer in"),
    ({"epochs": None, "steps": 100_000, "eval_every": 1}, "eval_every", "evaluations"),
    ({"epochs": None, "steps": 100, "eval_every": 10, "early_stopping": {"kind": "asha", "grace_epochs": 2}},
     "early_stopping.grace_epochs", "grace_steps"),
])
def test_bad_lengths_and_objectives_are_422s_naming_the_field(api_only: TestClient, change: dict, loc: str,
                                                              words: str) -> None:
    spec = {"workload": "mlp-digits", "strategy": "random", "max_trials": 2, "epochs": 3,
            "space": {"lr": {"low": 1e-3, "high": 1.0}}} | change
    spec = {k: v for k, v in spec.items() if v is not None}
    response = api_only.post("/api/v1/jobs", json=spec)
    assert response.status_code == 422, response.text
    assert loc in response.text and words in response.text
    assert api_only.get("/api/v1/jobs").json()["total"] == 0  # nothing written


def test_workloads_list_what_they_report(api_only: TestClient) -> None:
    listing = {w["name"]: w for w in api_only.get("/api/v1/workloads").json()["items"]}
    assert listing["gpt-stdlib"]["metrics"] == {"val_loss": "min", "val_bpb": "min"}
    assert listing["mlp-digits"]["metrics"] == {"val_loss": "min", "val_accuracy": "max"}


def test_the_batch_size_is_part_of_the_spec(client: TestClient) -> None:
    default = client.post("/api/v1/jobs", json={"workload": "mlp-digits", "strategy": "manual", "epochs": 1,
                                               "configs": [{"lr": 0.1, "optimizer": "sgd"}]}).json()
    assert default["spec"]["batch_size"] == 64  # the workload's, stored with the job
    spec = {"workload": "mlp-digits", "strategy": "manual", "epochs": 2, "batch_size": 128,
            "configs": [{"lr": 0.1, "optimizer": "sgd"}]}
    job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
    assert job["status"] == "completed", job
    # 1,437 training examples: 12 steps of 128 per epoch (23 of the workload's 64).
    assert [r["step"] for r in _metrics(client, job["id"], 0)] == [12, 24]
    moved = client.get(f"/api/v1/jobs/{job['id']}/best?batch_size=256").json()
    assert moved["transfer"]["from_batch_size"] == 128 and moved["lr"] == pytest.approx(0.2)
    wait_for_job(client, default["id"])
    bad = client.post("/api/v1/jobs", json={**spec, "batch_size": 0})
    assert bad.status_code == 422 and "batch_size" in bad.text
