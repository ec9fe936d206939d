"""Exports: CSV and JSON tables of trials, and an Optuna study Optuna itself loads."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from fastapi.testclient import TestClient

from tests.conftest import REPO, ServiceProcess
from tests.service.conftest import wait_for_job

SPEC = {"workload": "mlp-digits", "strategy": "manual", "epochs": 3,
        "configs": [{"lr": 0.05, "schedule": "step"}, {"lr": 0.003, "optimizer": "adam"}, {"lr": 0.0005},
                    {"lr": 80.0}]}


@pytest.fixture
def finished_job(client: TestClient) -> dict:
    job = wait_for_job(client, client.post("/api/v1/jobs", json=SPEC).json()["id"])
    assert job["status"] == "completed"
    return job


def test_csv_has_a_header_with_lr_and_a_row_per_trial(client: TestClient, finished_job: dict) -> None:
    r = client.get(f"/api/v1/jobs/{finished_job['id']}/export", params={"format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 4
    assert {"lr", "optimizer", "schedule", "status", "val_loss", "epochs"} <= set(rows[0])
    assert [float(row["lr"]) for row in rows] == [0.05, 0.003, 0.0005, 80.0]
    assert rows[3]["status"] == "diverged"
    assert rows[0]["step_size"] != "" and rows[1]["step_size"] == ""


def test_csv_text_that_a_spreadsheet_would_run_is_written_as_text(client: TestClient, finished_job: dict,
                                                                  db_url: str) -> None:
    # A trial's error comes from the workload's code (a plug-in's exception message): a cell starting
    # with "=" would be a formula in a spreadsheet. Numbers stay numbers.
    from sqlalchemy import create_engine, update

    from lrsearch.service.models import Trial

    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(update(Trial).where(Trial.job_id == finished_job["id"], Trial.number == 0)
                     .values(error='=HYPERLINK("http://example.invalid","x")'))
    engine.dispose()
    r = client.get(f"/api/v1/jobs/{finished_job['id']}/export", params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["error"] == "'" + '=HYPERLINK("http://example.invalid","x")'
    assert float(rows[0]["lr"]) == 0.05 and rows[1]["error"] == ""
    # The JSON export keeps the text exactly as stored.
    assert client.get(f"/api/v1/jobs/{finished_job['id']}/export").json()["rows"][0]["error"].startswith("=HYPERLINK")


def test_json_export_matches_trials(client: TestClient, finished_job: dict) -> None:
    body = client.get(f"/api/v1/jobs/{finished_job['id']}/export").json()
    trials = client.get(f"/api/v1/jobs/{finished_job['id']}/trials").json()["items"]
    assert [r["val_loss"] for r in body["rows"]] == [t["val_loss"] for t in trials]
    assert client.get(f"/api/v1/jobs/{finished_job['id']}/export", params={"format": "xml"}).status_code == 422


def test_export_optuna_loads_with_the_same_best(shared_service: ServiceProcess, tmp_path: Path) -> None:
    import httpx

    service = shared_service
    job = httpx.post(f"{service.url}/api/v1/jobs", json=SPEC).json()
    import time

    deadline = time.monotonic() + 120
    while httpx.get(f"{service.url}/api/v1/jobs/{job['id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    best = httpx.get(f"{service.url}/api/v1/jobs/{job['id']}/best").json()
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    out = subprocess.run([sys.executable, "-m", "lrsearch.service.cli", "export-optuna", str(job["id"]), "--storage",
                          storage, "--url", service.url], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    study = optuna.load_study(study_name=f"lrsearch-job-{job['id']}", storage=storage)
    assert len(study.trials) == 4
    assert study.best_value == pytest.approx(best["val_loss"])
    assert study.best_trial.params["lr"] == best["lr"]
    assert study.trials[3].state == optuna.trial.TrialState.FAIL  # the diverged one
    assert len(study.trials[0].intermediate_values) == 3


def test_exports_of_a_range_test_job(client: TestClient, tmp_path: Path) -> None:
    """The CSV writes a range test's settings as JSON; the Optuna study leaves the sweeps out."""
    from lrsearch.service.export import to_optuna_study

    spec = {"name": "finder-export", "workload": "mlp-digits", "strategy": "range_test", "epochs": 2,
            "space": {"optimizer": ["sgd"]}, "options": {"num_steps": 30, "repeats": 2}}
    job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
    assert job["status"] == "completed"
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    rows = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/jobs/{job['id']}/export",
                                                      params={"format": "csv"}).text)))
    assert [json.loads(r["range_test"])["repeat"] for r in rows[:2]] == [0, 1] and rows[2]["range_test"] == ""
    storage = f"sqlite:///{tmp_path / 'finder.db'}"
    study = to_optuna_study(job, trials, {}, storage, "finder")
    assert len(study.trials) == 1 and study.user_attrs["range_tests_left_out"] == [0, 1]
    assert study.best_value == pytest.approx(trials[2]["val_loss"])
