"""range_test and auto jobs through the real app: a local Ray, SQLite and PostgreSQL."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from lrsearch.search.range_test import summarize
from tests.service.conftest import wait_for_job

DIGITS_OPTIMIZERS = ["sgd", "adam"]


def range_test_spec(**overrides: object) -> dict:
    spec = {"name": "digits-finder", "workload": "mlp-digits", "strategy": "range_test", "epochs": 3,
            "max_concurrent": 2, "space": {"optimizer": DIGITS_OPTIMIZERS},
            "options": {"num_steps": 60, "repeats": 2}}
    spec.update(overrides)
    return spec


def test_range_test_job_stores_curves_and_checks_each_suggestion(client: TestClient) -> None:
    r = client.post("/api/v1/jobs", json=range_test_spec())
    assert r.status_code == 201, r.text
    job = r.json()
    # lr defaults to the classic sweep; 2 optimizers x 2 repeats, then one check per optimizer.
    assert job["spec"]["space"]["lr"] == {"low": 1e-7, "high": 10.0}
    assert job["total_trials"] == 6
    job = wait_for_job(client, job["id"])
    assert job["status"] == "completed", job
    assert job["trial_counts"]["completed"] == 6

    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    tests, checks = trials[:4], trials[4:]
    curves: dict[str, list] = {}
    # A range test's curve is its own record (GET /range_test), not metric rows posing as epochs.
    stored = {c["trial"]: c for f in client.get(f"/api/v1/jobs/{job['id']}/range_test").json()["items"]
              for c in f["curves"]}
    for t in tests:
        test = t["config"]["range_test"]
        assert t["kind"] == "range_test" and t["config"]["optimizer"] == DIGITS_OPTIMIZERS[t["number"] // 2]
        assert test["repeat"] == t["number"] % 2 and test["num_steps"] == 60
        assert t["val_loss"] is None  # a range test never ranks
        assert client.get(f"/api/v1/jobs/{job['id']}/trials/{t['number']}/metrics").json()["items"] == []
        lrs, losses = stored[t["number"]]["lrs"], stored[t["number"]]["losses"]
        assert 2 <= len(lrs) <= 60 and t["epochs"] == len(lrs) == len(losses)
        assert lrs[0] == pytest.approx(1e-7) and all(b > a for a, b in zip(lrs, lrs[1:]))
        assert all(math.isfinite(v) for v in losses)
        curves.setdefault(t["config"]["optimizer"], []).append((1e-7, lrs, losses))
    # The two repeats train from different seeds: their curves differ.
    for runs in curves.values():
        assert runs[0][2][:5] != runs[1][2][:5]

    best = client.get(f"/api/v1/jobs/{job['id']}/best").json()
    expected = {o: summarize(runs)["lr"] for o, runs in curves.items()}
    assert best["suggestions"] == pytest.approx(expected)
    for summary in best["range_test"].values():
        assert summary["spread"]["n"] == 2 and len(summary["per_seed"]) == 2
        assert set(summary["rules"]) == {"steepest", "valley", "minimum_tenth", "lr_at_min", "combined"}
    # The checks train `epochs` at each suggestion; the best is one of them, with a validation loss.
    assert [c["config"]["optimizer"] for c in checks] == DIGITS_OPTIMIZERS
    for c in checks:
        assert c["config"]["lr"] == pytest.approx(expected[c["config"]["optimizer"]])
        assert "range_test" not in c["config"] and c["epochs"] == 3 and c["val_loss"] is not None
    winner = min(checks, key=lambda c: c["val_loss"])
    assert best["trial"] == winner["number"] and best["val_loss"] == winner["val_loss"]
    assert best["lr"] == pytest.approx(expected[winner["config"]["optimizer"]])
    assert best["lr_interval"]["low"] <= best["lr"] <= best["lr_interval"]["high"]
    # A trained digits MLP is far better than chance (ln 10 = 2.3).
    assert winner["val_loss"] < 0.5 * math.log(10)

    finder = client.get(f"/api/v1/jobs/{job['id']}/range_test").json()["items"]
    assert [f["optimizer"] for f in finder] == DIGITS_OPTIMIZERS
    for f in finder:
        assert len(f["curves"]) == 2 and f["suggestion"]["lr"] == pytest.approx(expected[f["optimizer"]])
        for curve in f["curves"]:
            assert len(curve["lrs"]) == len(curve["losses"]) == len(curve["smoothed"])


def test_range_test_without_verify_answers_a_suggestion(client: TestClient) -> None:
    spec = range_test_spec(options={"num_steps": 40, "repeats": 1, "verify": False})
    job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
    assert job["status"] == "completed" and job["trial_counts"]["completed"] == 2
    assert job["best"] is None  # nothing was trained
    best = client.get(f"/api/v1/jobs/{job['id']}/best").json()
    assert best["val_loss"] is None and best["epoch"] is None
    assert best["lr"] == pytest.approx(best["suggestions"][best["config"]["optimizer"]])
    assert "range_test" not in best["config"] and best["config"]["lr"] == best["lr"]
    moved = client.get(f"/api/v1/jobs/{job['id']}/best?batch_size=256").json()
    assert moved["transfer"]["from_lr"] == best["lr"] and moved["lr"] != best["lr"]


def test_auto_job_searches_inside_the_windows(client: TestClient) -> None:
    spec = {"name": "digits-auto", "workload": "mlp-digits", "strategy": "auto", "epochs": 4, "max_trials": 9,
            "max_concurrent": 2, "seed": 1,
            "space": {"lr": {"low": 1e-5, "high": 10.0}, "optimizer": DIGITS_OPTIMIZERS,
                      "schedule": ["constant", "cosine"]},
            "options": {"num_steps": 60}}
    r = client.post("/api/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    assert r.json()["spec"]["early_stopping"] == {"kind": "asha"}  # auto's default, written down
    job = wait_for_job(client, r.json()["id"])
    assert job["status"] == "completed", job
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert len(trials) == 9
    assert all("range_test" in t["config"] for t in trials[:2])
    best = client.get(f"/api/v1/jobs/{job['id']}/best").json()
    suggestions = best["suggestions"]
    assert set(suggestions) == set(DIGITS_OPTIMIZERS)
    searched = trials[2:]
    # First the suggestions themselves, then the search, each inside its optimizer's window.
    assert [t["config"]["lr"] for t in searched[:2]] == pytest.approx([suggestions[o] for o in DIGITS_OPTIMIZERS])
    for t in searched:
        s = suggestions[t["config"]["optimizer"]]
        assert max(1e-5, s / 10) * (1 - 1e-9) <= t["config"]["lr"] <= min(10.0, s * 10) * (1 + 1e-9)
        assert "range_test" not in t["config"]
    assert best["val_loss"] == min(t["val_loss"] for t in searched if t["val_loss"] is not None)
    assert best["trial"] >= 2


@pytest.mark.parametrize(("patch", "loc"), [
    ({"strategy": "auto", "max_trials": 2}, "max_trials"),
    ({"strategy": "auto", "space": {"lr": {"values": [0.1, 0.01]}}}, "space.lr"),
    ({"options": {"num_steps": 5}}, "options.num_steps"),
    ({"options": {"repeats": 0}}, "options.repeats"),
    ({"options": {"verify": "yes"}}, "options.verify"),
    ({"options": {"divergence_factor": 1.0}}, "options.divergence_factor"),
    ({"strategy": "auto", "options": {"window_decades": 0}}, "options.window_decades"),
    ({"strategy": "auto", "options": {"verify": False}}, "options.verify"),
    ({"space": {"lr": {"low": 1.0, "high": 0.1}}}, "space.lr.low"),
])
def test_bad_finder_specs_are_rejected_and_write_nothing(api_only: TestClient, patch: dict, loc: str) -> None:
    before = api_only.get("/api/v1/jobs").json()["total"]
    r = api_only.post("/api/v1/jobs", json=range_test_spec(**patch))
    assert r.status_code == 422, r.text
    assert loc in r.text
    assert api_only.get("/api/v1/jobs").json()["total"] == before


def test_range_tests_run_from_the_training_seed(client: TestClient) -> None:
    """A range test trains from the job's training seed (plus its repeat), not its search seed."""
    def curves(**seeds: int) -> list[list[float]]:
        spec = range_test_spec(options={"num_steps": 40, "repeats": 1, "verify": False}, **seeds)
        job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
        assert job["status"] == "completed", job
        finder = client.get(f"/api/v1/jobs/{job['id']}/range_test").json()["items"]
        return [c["losses"] for f in finder for c in f["curves"]]

    on_5 = curves(seed=1, training_seed=5)
    assert curves(seed=2, training_seed=5) == on_5
    assert curves(seed=5) == on_5
    assert curves(seed=1, training_seed=6) != on_5
