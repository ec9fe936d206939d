"""A manual job with every optimizer x every schedule (warmup on some): each trial's lr rows have its
schedule's shape, and every trial learns."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from lrsearch.search.catalog import OPTIMIZERS, SCHEDULES
from tests.service.conftest import wait_for_job

LR = {"sgd": 0.05, "adam": 0.003, "adamw": 0.003, "rmsprop": 0.001, "adagrad": 0.05}
EPOCHS = 6
WARMUP = {("sgd", "constant"), ("adam", "cosine"), ("rmsprop", "step"), ("adagrad", "constant")}


def test_every_optimizer_and_schedule(client: TestClient) -> None:
    configs = [{"lr": LR[o], "optimizer": o, "schedule": s, "warmup_fraction": 0.2 if (o, s) in WARMUP else 0.0}
               for o in OPTIMIZERS for s in SCHEDULES]
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
