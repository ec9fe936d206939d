"""A manual job with every optimizer x every schedule (warmup on some): each trial's lr rows have its
schedule's shape, and every trial learns. A piecewise job, whose points the configs give, runs on
the in-process executor: its rows are its points' rates."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lrsearch.search.catalog import OPTIMIZERS, SCHEDULES, required_params
from lrsearch.service.app import create_app
from lrsearch.service.config import Settings
from lrsearch.workers.in_process_executor import InProcessExecutor
from tests.service.conftest import wait_for_job

LR = {"sgd": 0.05, "adam": 0.003, "adamw": 0.003, "rmsprop": 0.001, "adagrad": 0.05}
EPOCHS = 6
WARMUP = {("sgd", "constant"), ("adam", "cosine"), ("rmsprop", "step"), ("adagrad", "constant")}


def test_every_optimizer_and_schedule(client: TestClient) -> None:
    configs = [{"lr": LR[o], "optimizer": o, "schedule": s, "warmup_fraction": 0.2 if (o, s) in WARMUP else 0.0}
               for o in OPTIMIZERS for s in SCHEDULES if not required_params(s)]  # piecewise: below
    assert len(configs) == 25
    job = client.post("/api/v1/jobs", json={"workload": "mlp-digits", "strategy": "manual", "epochs": EPOCHS,
                                            "max_concurrent": 2, "configs": configs}).json()
    job = wait_for_job(client, job["id"], timeout=300)
    assert job["status"] == "completed" and job["trial_counts"]["completed"] == 25, job
    for t in client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]:
        c = t["config"]
        rows = client.get(f"/api/v1/jobs/{job['id']}/trials/{t['number']}/metrics").json()["items"]
        lr = [r["lr"] for r in rows]
        base = c["lr"]
        label = f"{c['optimizer']}/{c['schedule']}/warmup={c['warmup_fraction']}: {lr}"
        assert len(lr) == EPOCHS, label
        warm = c["warmup_fraction"] > 0
        if warm:
            assert lr[0] < base and lr[1] > lr[0], label  # rising from below the base rate
        if c["schedule"] == "constant":  # flat at the base rate once any warmup is over
            assert all(b >= a for a, b in zip(lr, lr[1:])), label
            assert all(x == pytest.approx(base) for x in lr[2 if warm else 0:]), label
        elif c["schedule"] == "step":
            assert all(b <= a * (1 + 1e-9) for a, b in zip(lr[1:], lr[2:])) and lr[-1] < 0.5 * base, label
        elif c["schedule"] == "exponential":
            ratios = [b / a for a, b in zip(lr, lr[1:])]
            assert all(r == pytest.approx(c["gamma"], rel=1e-6) for r in ratios), label
            assert c["gamma"] < 1
        elif c["schedule"] == "cosine":
            assert lr[-1] < 0.5 * base and all(b < a for a, b in zip(lr[1:], lr[2:])), label
        elif c["schedule"] == "onecycle":
            peak = max(range(EPOCHS), key=lambda i: lr[i])
            assert 0 < peak < EPOCHS - 1, label  # rises, then falls
            assert lr[peak] == pytest.approx(base, rel=0.05) and lr[0] < 0.2 * base, label
        # Every trial learns: far below the untrained loss (ln 10 for 10 classes), accurate at the end.
        assert t["val_loss"] < 0.5 * math.log(10), label
        assert rows[-1]["val_accuracy"] > 0.8, label


# --- piecewise: the configs give the points (absolute rates, in epochs or in steps) ---------------------

EPOCH_POINTS = [[0, 0.1], [2, 0.05], [4, 0.01]]
STEP_POINTS = [[0, 0.08], [15, 0.02], [30, 0.004]]


def _rows(client: TestClient, job_id: int, number: int) -> list[dict]:
    return client.get(f"/api/v1/jobs/{job_id}/trials/{number}/metrics").json()["items"]


def test_a_manual_piecewise_job_runs_in_process(db_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=db_url, poll_interval=0.05, data_dir=str(tmp_path), checkpoint_every=1,
                        lease_seconds=0.5)
    with TestClient(create_app(settings, executor=InProcessExecutor())) as client:
        # The submit form offers schedules to sample: not piecewise, whose points it does not ask for.
        page = client.get("/").text
        form = json.loads(html.unescape(re.search(r'data-config="([^"]*)"', page).group(1)))
        assert "piecewise" not in form["schedules"] and "cosine" in form["schedules"]

        # Bad points: one 422 naming each config's field and what is wrong; nothing is written.
        bad = client.post("/api/v1/jobs", json={
            "workload": "synthetic", "strategy": "manual", "epochs": 6, "configs": [
                {"lr": 0.1, "schedule": "piecewise"},
                {"lr": 0.1, "schedule": "piecewise", "lr_points": [[0, 0.1], [3, 0.05], [3, 0.01]]}]})
        assert bad.status_code == 422, bad.text
        found = {tuple(d["loc"][1:]): d["msg"] for d in bad.json()["detail"]}
        assert found[("configs", 0, "lr_points")].startswith("is required for the piecewise schedule")
        assert "strictly increasing" in found[("configs", 1, "lr_points", 2, 0)], found
        assert client.get("/api/v1/jobs").json()["total"] == 0

        configs = [{"lr": 0.1, "optimizer": "sgd", "schedule": "piecewise", "lr_points": EPOCH_POINTS},
                   {"lr": 0.1, "optimizer": "adam", "schedule": "piecewise", "warmup_fraction": 0.2,
                    "lr_points": [[0, 0.01], [3, 0.002]]}]
        r = client.post("/api/v1/jobs", json={"workload": "synthetic", "strategy": "manual", "epochs": 6,
                                              "max_concurrent": 2, "early_stopping": None, "configs": configs})
        assert r.status_code == 201, r.text
        epoch_job = r.json()["id"]
        r = client.post("/api/v1/jobs", json={"workload": "synthetic", "strategy": "manual", "steps": 40,
                                              "eval_every": 10, "configs": [
                                                  {"lr": 0.08, "schedule": "piecewise", "lr_points": STEP_POINTS}]})
        assert r.status_code == 201, r.text
        step_job = r.json()["id"]

        job = wait_for_job(client, epoch_job, timeout=120)
        assert job["status"] == "completed" and job["trial_counts"]["completed"] == 2, job
        trials = client.get(f"/api/v1/jobs/{epoch_job}/trials").json()["items"]
        assert [t["config"]["lr_points"] for t in trials] == [EPOCH_POINTS, [[0, 0.01], [3, 0.002]]]
        # Each row's lr is the rate in effect at its epoch's first step: the points' own rates.
        assert [m["lr"] for m in _rows(client, epoch_job, 0)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.01, 0.01])
        warm = [m["lr"] for m in _rows(client, epoch_job, 1)]
        assert warm[0] < 0.01 and warm[2] == pytest.approx(0.01) and warm[3:] == pytest.approx([0.002] * 3)
        best = client.get(f"/api/v1/jobs/{epoch_job}/best").json()
        assert best["config"]["schedule"] == "piecewise" and "lr_points" in best["config"]
        exported = list(csv.DictReader(io.StringIO(client.get(f"/api/v1/jobs/{epoch_job}/export?format=csv").text)))
        assert json.loads(exported[0]["lr_points"]) == EPOCH_POINTS  # JSON in the cell, not Python's repr

        job = wait_for_job(client, step_job, timeout=120)
        assert job["status"] == "completed", job
        rows = _rows(client, step_job, 0)
        # In a step job at counts steps: rows at steps 10..40, each with the rate at its first step
        # (steps 0, 10, 20, 30: the point at step 15 first shows in the third row).
        assert [m["step"] for m in rows] == [10, 20, 30, 40]
        assert [m["lr"] for m in rows] == pytest.approx([0.08, 0.08, 0.02, 0.004])


def test_piecewise_trials_export_to_optuna() -> None:
    from lrsearch.service.export import to_optuna_study

    config = {"lr": 0.1, "optimizer": "sgd", "schedule": "piecewise", "warmup_fraction": 0.0, "lr_points": EPOCH_POINTS}
    trials = [{"number": 0, "status": "completed", "kind": "training", "val_loss": 0.5, "objective": 0.5,
               "config": config},
              {"number": 1, "status": "completed", "kind": "training", "val_loss": 0.4, "objective": 0.4,
               "config": {**{k: v for k, v in config.items() if k != "lr_points"}, "schedule": "constant"}}]
    study = to_optuna_study({"id": 1, "spec": {"workload": "synthetic"}}, trials, {}, None, "piecewise")
    # Optuna's values are scalars: a list of points is its JSON text, a categorical choice.
    assert json.loads(study.trials[0].params["lr_points"]) == EPOCH_POINTS
    assert "lr_points" not in study.trials[1].params
