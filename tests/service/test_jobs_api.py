"""End to end through the real app: submit over REST, train on Ray, persist, query the best."""

from __future__ import annotations

import itertools
import math

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import wait_for_job

GRID_LRS = [0.001, 0.01, 0.05, 0.2]


def grid_spec() -> dict:
    return {
        "name": "digits-grid",
        "workload": "mlp-digits",
        "strategy": "grid",
        "epochs": 4,
        "max_concurrent": 2,
        "space": {"lr": {"values": GRID_LRS}, "optimizer": ["sgd"], "schedule": ["constant", "step"]},
    }


def test_grid_job_end_to_end(client: TestClient) -> None:
    r = client.post("/api/v1/jobs", json=grid_spec())
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["total_trials"] == 8 and job["name"] == "digits-grid"

    job = wait_for_job(client, job["id"])
    assert job["status"] == "completed", job
    assert job["trial_counts"]["completed"] == 8 and job["started_at"] and job["finished_at"]

    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()
    assert trials["total"] == 8
    assert [t["number"] for t in trials["items"]] == list(range(8))
    covered = {(t["config"]["lr"], t["config"]["schedule"]) for t in trials["items"]}
    assert covered == set(itertools.product(GRID_LRS, ["constant", "step"]))

    best_trial = None
    for t in trials["items"]:
        metrics = client.get(f"/api/v1/jobs/{job['id']}/trials/{t['number']}/metrics").json()["items"]
        assert [m["epoch"] for m in metrics] == [0, 1, 2, 3]
        lrs = [m["lr"] for m in metrics]
        base = t["config"]["lr"]
        if t["config"]["schedule"] == "constant":
            assert all(math.isclose(x, base) for x in lrs)
        else:  # step: decays by gamma every step_size epochs
            step, gamma = t["config"]["step_size"], t["config"]["gamma"]
            assert step == 2 and gamma == 0.1
            expected = [base * gamma ** (e // step) for e in range(4)]
            assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(lrs, expected)), lrs
        losses = [m["val_loss"] for m in metrics]
        assert t["val_loss"] == pytest.approx(min(losses))
        assert t["epochs"] == 4 and t["best_epoch"] == losses.index(min(losses))
        assert all(0.0 <= m["val_accuracy"] <= 1.0 for m in metrics)
        if best_trial is None or t["val_loss"] < best_trial["val_loss"]:
            best_trial = t

    best = client.get(f"/api/v1/jobs/{job['id']}/best").json()
    assert best["trial"] == best_trial["number"]
    assert best["lr"] == best_trial["config"]["lr"] and best["val_loss"] == best_trial["val_loss"]
    assert best["config"] == best_trial["config"]
    baseline = min(t["val_loss"] for t in trials["items"] if t["config"]["lr"] == 0.001)
    assert best["val_loss"] < baseline  # a real search beats a timid learning rate
    assert job["best"] == {k: best[k] for k in job["best"]}

    # How sure: the learning rates as good as the best's, and the best of each optimizer.
    interval = best["lr_interval"]
    assert interval["low"] <= best["lr"] <= interval["high"] and interval["method"]
    assert best["per_optimizer"]["sgd"]["trial"] == best["trial"]
    # Transfer to another batch size: mlp-digits trains with 64; SGD scales linearly.
    moved = client.get(f"/api/v1/jobs/{job['id']}/best", params={"batch_size": 128}).json()
    assert moved["lr"] == pytest.approx(2 * best["lr"]) and moved["transfer"]["rule"] == "linear"
    assert moved["transfer"]["from_batch_size"] == 64 and moved["transfer"]["from_lr"] == best["lr"]
    assert client.get(f"/api/v1/jobs/{job['id']}/best", params={"batch_size": 0}).status_code == 422


def test_best_for_a_batch_size_when_the_workload_is_gone(client: TestClient, db_url: str) -> None:
    # A plug-in workload uninstalled since its job ran, a job stored before the spec carried its
    # batch size: that is unknown, which is a 409 naming batch_size, not a 500; the best itself
    # still answers. A job that stored its batch size transfers from it whatever is installed.
    spec = {"workload": "synthetic", "strategy": "manual", "epochs": 2, "configs": [{"lr": 0.05}]}
    job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
    from sqlalchemy import create_engine, update

    from lrsearch.service.models import Job

    engine = create_engine(db_url)
    gone = {**job["spec"], "workload": "gone-plugin"}
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job["id"]).values(spec=gone))
    moved = client.get(f"/api/v1/jobs/{job['id']}/best", params={"batch_size": 128})
    assert moved.status_code == 200 and moved.json()["transfer"]["from_batch_size"] == 64
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job["id"]).values(
            spec={k: v for k, v in gone.items() if k != "batch_size"}))
    engine.dispose()
    r = client.get(f"/api/v1/jobs/{job['id']}/best", params={"batch_size": 128})
    assert r.status_code == 409, r.text
    assert "batch_size" in r.json()["detail"] and "gone-plugin" in r.json()["detail"]
    assert client.get(f"/api/v1/jobs/{job['id']}/best").status_code == 200


def test_random_job_is_reproducible_and_in_range(client: TestClient) -> None:
    spec = {"workload": "synthetic", "strategy": "random", "max_trials": 6, "max_concurrent": 2, "epochs": 2,
            "seed": 7, "space": {"lr": {"low": 1e-4, "high": 0.5}, "optimizer": ["sgd", "adam"]}}
    runs = []
    for _ in range(2):
        job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
        assert job["status"] == "completed"
        trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
        runs.append([(t["config"]["lr"], t["config"]["optimizer"]) for t in trials])
    lrs = [lr for lr, _ in runs[0]]
    assert len(lrs) == 6 and len(set(lrs)) == 6
    assert all(1e-4 <= lr <= 0.5 for lr in lrs)
    assert runs[0] == runs[1]
    other = client.post("/api/v1/jobs", json={**spec, "seed": 8}).json()
    wait_for_job(client, other["id"])
    other_lrs = [t["config"]["lr"] for t in client.get(f"/api/v1/jobs/{other['id']}/trials").json()["items"]]
    assert other_lrs != lrs


def test_manual_job_runs_exactly_its_configs(client: TestClient) -> None:
    configs = [{"lr": 0.05, "optimizer": "sgd", "schedule": "step"},
               {"lr": 0.003, "optimizer": "adam", "schedule": "cosine", "warmup_fraction": 0.2},
               {"lr": 0.1, "optimizer": "sgd", "schedule": "exponential", "momentum": 0.5}]
    job = client.post("/api/v1/jobs", json={"workload": "mlp-digits", "strategy": "manual", "epochs": 3,
                                            "configs": configs}).json()
    assert job["total_trials"] == 3
    job = wait_for_job(client, job["id"])
    trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert [(t["config"]["lr"], t["config"]["optimizer"], t["config"]["schedule"]) for t in trials] == [
        (c["lr"], c["optimizer"], c["schedule"]) for c in configs]
    assert trials[1]["config"]["warmup_fraction"] == 0.2 and trials[2]["config"]["momentum"] == 0.5
    for t in trials:
        assert {"lr", "optimizer", "schedule", "warmup_fraction"} <= set(t["config"])


def test_divergent_trial_is_recorded_not_retried(client: TestClient) -> None:
    job = client.post("/api/v1/jobs", json={"workload": "mlp-digits", "strategy": "manual", "epochs": 4,
                                            "configs": [{"lr": 50.0}, {"lr": 0.05}]}).json()
    job = wait_for_job(client, job["id"])
    assert job["status"] == "completed"
    diverged, ok = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert diverged["status"] == "diverged" and "epoch" in diverged["error"] and diverged["attempts"] == 1
    assert ok["status"] == "completed"
    assert job["best"]["trial"] == 1
    metrics = client.get(f"/api/v1/jobs/{job['id']}/trials/0/metrics").json()["items"]
    assert 1 <= len(metrics) <= 4  # the epochs it ran, up to the one where it diverged


def test_with_early_stopping_a_first_epoch_that_learned_nothing_is_pruned_there(client: TestClient) -> None:
    # rmsprop at 0.067 ends its first epoch above the untrained model's loss (not 10x above it);
    # sgd at 1e-4 ends it about 0.2% below (under the 1% that counts as learning something).
    configs = [{"lr": 0.067, "optimizer": "rmsprop", "schedule": "constant"},
               {"lr": 1e-4, "optimizer": "sgd", "schedule": "constant"},
               {"lr": 0.003, "optimizer": "adam", "schedule": "constant"}]
    base = {"workload": "mlp-digits", "strategy": "manual", "epochs": 4, "configs": configs}
    # The median rule never stops a trial of a three-trial job: what stops the first two is this rule.
    stopping = client.post("/api/v1/jobs", json={**base, "early_stopping": {"kind": "median"}}).json()
    plain = client.post("/api/v1/jobs", json=base).json()
    for job in (stopping, plain):
        assert wait_for_job(client, job["id"])["status"] == "completed"
    bouncing, crawling, learning = client.get(f"/api/v1/jobs/{stopping['id']}/trials").json()["items"]
    for hopeless in (bouncing, crawling):
        assert hopeless["status"] == "pruned" and hopeless["epochs"] == 1
        metrics = client.get(f"/api/v1/jobs/{stopping['id']}/trials/{hopeless['number']}/metrics").json()["items"]
        assert len(metrics) == 1
    assert learning["status"] == "completed" and learning["epochs"] == 4
    # Without early stopping the same configs train every epoch.
    trials = client.get(f"/api/v1/jobs/{plain['id']}/trials").json()["items"]
    assert [(t["status"], t["epochs"]) for t in trials] == [("completed", 4)] * 3
    first = client.get(f"/api/v1/jobs/{plain['id']}/trials/0/metrics").json()["items"][0]
    assert first["val_loss"] > 2.3  # above the untrained model's (~2.3 on ten classes)
    crawled = client.get(f"/api/v1/jobs/{plain['id']}/trials/1/metrics").json()["items"]
    assert 2.2 < crawled[0]["val_loss"] < 2.4 and crawled[-1]["val_loss"] < crawled[0]["val_loss"]  # slowly down


def test_divergence_factor_is_configurable(client: TestClient) -> None:
    # lr 1.0 with SGD explodes on digits: 10x the first epoch's loss by default, but not 1e6x.
    base = {"workload": "mlp-digits", "strategy": "manual", "epochs": 3, "configs": [{"lr": 1.0}]}
    strict = wait_for_job(client, client.post("/api/v1/jobs", json=base).json()["id"])
    lax = wait_for_job(client, client.post("/api/v1/jobs", json={**base, "divergence_factor": 1e6}).json()["id"])
    assert strict["trial_counts"]["diverged"] == 1
    (trial,) = client.get(f"/api/v1/jobs/{lax['id']}/trials").json()["items"]
    assert trial["status"] in ("completed", "diverged")
    if trial["status"] == "diverged":  # only a NaN/inf loss may still end it
        assert "nan" in trial["error"].lower() or "inf" in trial["error"].lower() or "finite" in trial["error"]
    assert client.post("/api/v1/jobs", json={**base, "divergence_factor": 0.5}).status_code == 422


def test_cancel_stops_a_running_job(client: TestClient) -> None:
    spec = {"workload": "mlp-digits", "strategy": "random", "max_trials": 40, "max_concurrent": 2, "epochs": 30,
            "space": {"lr": {"low": 1e-3, "high": 0.1}}}
    job = client.post("/api/v1/jobs", json=spec).json()
    import time

    deadline = time.monotonic() + 60
    while client.get(f"/api/v1/jobs/{job['id']}").json()["trial_counts"]["running"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = client.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    job = wait_for_job(client, job["id"], timeout=60)
    assert job["status"] == "cancelled"
    counts = job["trial_counts"]
    assert counts["running"] == 0 and counts["queued"] == 0 and counts["cancelled"] >= 1
    assert sum(counts.values()) < 40


def test_cancel_a_queued_job_and_unknown_ids(api_only: TestClient) -> None:
    job = api_only.post("/api/v1/jobs", json={"workload": "synthetic", "space": {"lr": {"low": 0.01, "high": 0.1}}})
    assert job.status_code == 201
    jid = job.json()["id"]
    assert job.json()["total_trials"] == 20  # random's default budget
    assert api_only.post(f"/api/v1/jobs/{jid}/cancel").json()["status"] == "cancelled"
    assert api_only.get("/api/v1/jobs/999999").status_code == 404
    assert api_only.post("/api/v1/jobs/999999/cancel").status_code == 404
    assert api_only.get(f"/api/v1/jobs/{jid}/best").status_code == 404
    assert api_only.get(f"/api/v1/jobs/{jid}/trials/0/metrics").status_code == 404
    assert api_only.get("/api/v1/jobs/not-a-number").status_code == 422


def test_jobs_are_listed_newest_first_with_paging(api_only: TestClient) -> None:
    ids = [api_only.post("/api/v1/jobs", json={"name": f"j{i}", "workload": "synthetic", "max_trials": 1,
                                               "space": {"lr": {"low": 0.01, "high": 0.1}}}).json()["id"]
           for i in range(5)]
    page = api_only.get("/api/v1/jobs", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5
    assert [j["id"] for j in page["items"]] == [ids[3], ids[2]]
    assert api_only.get("/api/v1/jobs", params={"limit": 0}).status_code == 422
    assert api_only.get("/api/v1/jobs", params={"limit": 10001}).status_code == 422


def test_health_and_workloads(client: TestClient) -> None:
    health = client.get("/api/v1/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    names = [w["name"] for w in client.get("/api/v1/workloads").json()["items"]]
    assert "mlp-digits" in names
    assert client.get("/").status_code == 200 and "lrsearch" in client.get("/").text
    assert client.get("/docs").status_code == 200


def test_jobs_running_side_by_side_share_the_cluster(client: TestClient) -> None:
    """Two jobs of concurrency 2 on a 2-CPU Ray: the actors are shared, neither job starves, and a
    job cancelled while its trials wait for an actor ends."""
    grid = {"workload": "mlp-digits", "strategy": "grid", "epochs": 6, "max_concurrent": 2,
            "space": {"lr": {"values": [0.01, 0.03, 0.1, 0.2]}}}
    bayes = {"workload": "logreg-breast-cancer", "strategy": "bayesian", "max_trials": 8, "epochs": 6,
             "max_concurrent": 2, "space": {"lr": {"low": 1e-3, "high": 1.0}, "optimizer": ["sgd", "adam"]}}
    waiting = {**grid, "epochs": 50, "space": {"lr": {"values": [0.01, 0.02, 0.03, 0.04]}}}
    ids = [client.post("/api/v1/jobs", json=spec).json()["id"] for spec in (grid, bayes, waiting)]
    client.post(f"/api/v1/jobs/{ids[2]}/cancel")
    jobs = [wait_for_job(client, i, timeout=180) for i in ids]
    assert [j["status"] for j in jobs] == ["completed", "completed", "cancelled"], jobs
    assert jobs[0]["trial_counts"]["completed"] == 4 and jobs[1]["trial_counts"]["completed"] == 8
    assert jobs[2]["trial_counts"]["running"] == 0 and jobs[2]["trial_counts"]["queued"] == 0


def test_training_seed_sets_the_landscape_and_seed_the_search(client: TestClient) -> None:
    """``seed`` seeds the search; ``training_seed`` (default: ``seed``) every trial's init and batch
    order. Jobs with one training seed train a config identically whatever their search seed."""
    def run(**fields: object) -> list[tuple[float, str, float]]:
        spec = {"workload": "synthetic", "max_concurrent": 2, "epochs": 2, **fields}
        job = wait_for_job(client, client.post("/api/v1/jobs", json=spec).json()["id"])
        assert job["status"] == "completed", job
        trials = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
        return [(t["config"]["lr"], t["config"]["optimizer"], t["val_loss"]) for t in trials]

    configs = [{"lr": 0.05, "optimizer": "sgd"}, {"lr": 0.01, "optimizer": "adam"}]
    manual = {"strategy": "manual", "configs": configs}
    landscape_5 = run(**manual, seed=1, training_seed=5)
    assert run(**manual, seed=2, training_seed=5) == landscape_5
    assert run(**manual, seed=5) == landscape_5  # no training_seed: the seed trains too
    landscape_6 = run(**manual, seed=1, training_seed=6)
    assert [v for *_, v in landscape_6] != [v for *_, v in landscape_5]

    search = {"strategy": "random", "max_trials": 4, "space": {"lr": {"low": 1e-3, "high": 0.5},
                                                               "optimizer": ["sgd", "adam"]}}
    a, b = run(**search, seed=7, training_seed=3), run(**search, seed=7, training_seed=4)
    assert [c[:2] for c in a] == [c[:2] for c in b]  # the same suggestions ...
    assert [c[2] for c in a] != [c[2] for c in b]  # ... trained from another init


def test_training_seed_is_checked_and_echoed(api_only: TestClient) -> None:
    base = {"workload": "synthetic", "strategy": "random", "max_trials": 2,
            "space": {"lr": {"low": 1e-3, "high": 0.5}}}
    for bad in (-1, 2**31, "3", 1.5, True):
        r = api_only.post("/api/v1/jobs", json={**base, "training_seed": bad})
        assert r.status_code == 422, (bad, r.text)
        assert "training_seed" in r.text
    assert api_only.get("/api/v1/jobs").json()["total"] == 0
    job = api_only.post("/api/v1/jobs", json={**base, "seed": 3, "training_seed": 9}).json()
    assert (job["spec"]["seed"], job["spec"]["training_seed"]) == (3, 9)
    assert api_only.post("/api/v1/jobs", json=base).json()["spec"]["training_seed"] is None
