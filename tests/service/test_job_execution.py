"""The runner's logic (service/job_execution.py, service/trial_lifecycle.py) on the in-process
executor: real training in this process, a real store, no Ray. Every strategy, every backend.

The real-crash tests (SIGKILL of the service, of a Ray worker, of a database connection) stay on
the real stack: tests/service/test_restart.py, test_worker_loss.py, tests/reliability/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lrsearch.search import STRATEGIES
from lrsearch.service.app import create_app
from lrsearch.service.config import Settings
from lrsearch.service.ingest import StoreWriter, TrialInsert
from lrsearch.workers.in_process_executor import InProcessExecutor

FINISHED = ("completed", "cancelled", "failed")
SPACE = {"lr": {"low": 1e-3, "high": 0.3}, "optimizer": ["sgd", "adam"]}
BASE = {"workload": "synthetic", "epochs": 4, "max_concurrent": 2, "seed": 5}
# A small job of each strategy: what it takes, and how many trials it runs.
JOBS: dict[str, tuple[dict[str, Any], int]] = {
    "grid": ({"space": {"lr": {"low": 1e-3, "high": 0.1, "num": 3}}}, 3),
    "random": ({"space": SPACE, "max_trials": 4}, 4),
    "bayesian": ({"space": SPACE, "max_trials": 4}, 4),
    "manual": ({"configs": [{"lr": 0.01}, {"lr": 0.1, "optimizer": "adam"}]}, 2),
    "range_test": ({"options": {"num_steps": 20}}, 4),  # one range test per optimizer of the space
    "auto": ({"space": SPACE, "max_trials": 5, "options": {"num_steps": 20}}, 5),
    # Two members, four segments each (the default interval is a quarter of the run).
    "pbt": ({"space": {"lr": {"low": 1e-3, "high": 0.3}, "optimizer": ["sgd"]}, "options": {"population": 2}}, 8),
}


def test_every_strategy_has_a_job_here() -> None:
    assert sorted(JOBS) == sorted(STRATEGIES)


@contextmanager
def service(db_url: str, data_dir: Path, executor: InProcessExecutor | None = None) -> Iterator[TestClient]:
    settings = Settings(database_url=db_url, poll_interval=0.05, data_dir=str(data_dir), checkpoint_every=1,
                        lease_seconds=0.5)
    with TestClient(create_app(settings, executor=executor or InProcessExecutor())) as client:
        yield client


def submit(client: TestClient, spec: dict[str, Any]) -> int:
    r = client.post("/api/v1/jobs", json=spec)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def wait_until(client: TestClient, job_id: int, done: Any, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not done(job := client.get(f"/api/v1/jobs/{job_id}").json()):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    return job


def trials_of(client: TestClient, job_id: int) -> list[dict[str, Any]]:
    return client.get(f"/api/v1/jobs/{job_id}/trials", params={"limit": 500}).json()["items"]


def epochs_of(client: TestClient, job_id: int, number: int) -> list[int]:
    return [m["epoch"] for m in client.get(f"/api/v1/jobs/{job_id}/trials/{number}/metrics").json()["items"]]


def evaluations(trial: dict[str, Any]) -> list[int]:
    """The evaluations a trial stored, each once, in order: from 0, or a pbt segment's from its start
    (a segment's ``epochs`` is where its member got to)."""
    return list(range(trial["config"].get("pbt", {}).get("start", 0), trial["epochs"]))


def full_length(trial: dict[str, Any], epochs: int) -> int:
    return trial["config"].get("pbt", {}).get("stop", epochs)


@pytest.mark.parametrize("strategy", sorted(JOBS))
def test_a_job_of_every_strategy_runs_to_its_end(db_url: str, tmp_path: Path, strategy: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    extra, trials = JOBS[strategy]
    # Each new trial's strategy state as it was queued, and the object queued: the writer stores it
    # later, and after a crash the stored state must be the one of the last stored trial.
    queued: list[tuple[str, Any]] = []
    submit_write = StoreWriter.submit

    def keeping(writer: StoreWriter, write: Any) -> Any:
        if isinstance(write, TrialInsert):
            queued.append((json.dumps(write.strategy_state, sort_keys=True), write.strategy_state))
        return submit_write(writer, write)

    monkeypatch.setattr(StoreWriter, "submit", keeping)
    with service(db_url, tmp_path) as client:
        job_id = submit(client, {**BASE, "strategy": strategy, **extra})
        job = wait_until(client, job_id, lambda j: j["status"] in FINISHED)
        assert job["status"] == "completed", job
        listed = trials_of(client, job_id)
        assert [t["number"] for t in listed] == list(range(trials))
        for t in listed:
            assert t["status"] in ("completed", "pruned"), t
            if "range_test" not in t["config"]:
                # Every evaluation stored once, in order; a completed trial has all of them.
                assert epochs_of(client, job_id, t["number"]) == evaluations(t)
                assert t["epochs"] == full_length(t, BASE["epochs"]) or t["status"] == "pruned"
        best = client.get(f"/api/v1/jobs/{job_id}/best")
        assert best.status_code == 200, best.text
        assert best.json()["lr"] > 0
    assert len(queued) == trials
    assert [json.dumps(state, sort_keys=True) for _, state in queued] == [then for then, _ in queued]


def test_early_stopping_stops_trials_at_their_rungs_and_trains_nothing_beyond(db_url: str, tmp_path: Path) -> None:
    # Good rates first, one trial at a time: the slow ones reach the rung behind them and stop there.
    configs = [{"lr": lr, "optimizer": "sgd"} for lr in (0.2, 0.1, 1e-4, 2e-4, 3e-4)]
    spec = {**BASE, "strategy": "manual", "configs": configs, "epochs": 6, "max_concurrent": 1,
            "early_stopping": {"kind": "asha", "grace_epochs": 1, "reduction_factor": 2}}
    with service(db_url, tmp_path) as client:
        job_id = submit(client, spec)
        assert wait_until(client, job_id, lambda j: j["status"] in FINISHED)["status"] == "completed"
        listed = trials_of(client, job_id)
        pruned = [t for t in listed if t["status"] == "pruned"]
        assert {t["number"] for t in pruned} >= {2, 3, 4}, listed
        for t in pruned:
            # ASHA's rungs here are after epochs 1, 2 and 4: the worker waited there for the verdict.
            assert t["epochs"] in (1, 2, 4), t
            assert epochs_of(client, job_id, t["number"]) == list(range(t["epochs"]))
        assert listed[0]["status"] == "completed"  # first at every rung: nobody to compare with


# Besides one job of each strategy: bayesian whose lr windows follow each optimizer's best so far,
# which the restarted service must rebuild from the store.
RESTARTED = {**JOBS, "bayesian-windowed": ({"space": SPACE, "max_trials": 5,
                                            "options": {"lr_window_decades": 1.0, "n_startup_trials": 3}}, 5)}


@pytest.mark.parametrize("job", sorted(RESTARTED))
def test_a_service_stopped_mid_job_resumes_it_from_the_store(db_url: str, tmp_path: Path, job: str) -> None:
    """Stopped while trials train, started again on the same store: the finished trials are
    replayed, the running ones continue from their checkpoints, and the job ends with the trials
    an uninterrupted run has, each evaluation stored once."""
    extra, trials = RESTARTED[job]
    strategy = job.split("-")[0]
    epochs = 12
    if strategy == "pbt":  # two generations of 12-epoch segments: a stop lands inside one, not between two
        extra, trials, epochs = {**extra, "options": {"population": 2, "interval": 12}}, 4, 24
    if strategy == "range_test":  # one training trial, after the range tests: 12 epochs of it took
        epochs = 96  # about 0.1 s, a poll or two, and the test missed it mid-way now and then
    spec = {**BASE, "strategy": strategy, **extra, "epochs": epochs, "workload": "mlp-digits"}
    with service(db_url, tmp_path) as client:
        job_id = submit(client, spec)
        # Mid-trial: a training running with an evaluation stored and several more to come (the stop
        # takes a moment to reach it), the job not ended.
        mid = wait_until(client, job_id, lambda j: j["status"] in FINISHED or any(
            t["status"] == "running" and t["kind"] != "range_test"
            and len(evaluations(t)) >= 1 and t["epochs"] < full_length(t, epochs) - 4
            for t in trials_of(client, job_id)))
        assert mid["status"] == "running", mid
        before = {t["number"]: t for t in trials_of(client, job_id) if t["status"] in ("completed", "pruned")}
    with service(db_url, tmp_path) as client:
        job = wait_until(client, job_id, lambda j: j["status"] in FINISHED)
        assert job["status"] == "completed", job
        listed = trials_of(client, job_id)
        assert [t["number"] for t in listed] == list(range(trials))  # numbers never reused, none lost
        for t in listed:
            # Diverged is a search's answer too: where the stop lands changes which rates the
            # range-test strategy tries after it (one of them diverges now and then on either side).
            assert t["status"] in ("completed", "pruned", "diverged"), t
            if "range_test" not in t["config"]:
                assert epochs_of(client, job_id, t["number"]) == evaluations(t)
        for number, t in before.items():
            assert listed[number] == t  # a finished trial is untouched
        assert any(t["attempts"] > 1 for t in listed), ("no trial was running when the service stopped", mid, listed)
        configs = [t["config"] for t in listed]
        assert len({repr(sorted(c.items())) for c in configs}) == len(configs)  # no candidate twice


def test_a_cancelled_job_stops_its_running_trials(db_url: str, tmp_path: Path) -> None:
    executor = InProcessExecutor()
    with service(db_url, tmp_path, executor) as client:
        job_id = submit(client, {**BASE, "strategy": "random", "space": SPACE, "max_trials": 6, "epochs": 200,
                                 "workload": "mlp-digits"})
        wait_until(client, job_id, lambda j: j["trial_counts"].get("running", 0) >= 1)
        assert client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
        job = wait_until(client, job_id, lambda j: j["status"] in FINISHED, timeout=60)
        assert job["status"] == "cancelled"
        listed = trials_of(client, job_id)
        assert all(t["status"] == "cancelled" for t in listed), listed
        assert all(t["epochs"] < 200 for t in listed)
        assert len(executor.started) <= 2  # nothing started after the cancel


PBT = {"workload": "mlp-digits", "strategy": "pbt", "epochs": 12, "max_concurrent": 2, "seed": 3,
       "space": {"lr": {"low": 1e-3, "high": 0.5}, "optimizer": ["sgd"]},
       "options": {"population": 4, "interval": 3}}


def test_a_pbt_job_exploits_and_its_best_replays_as_a_piecewise_schedule(db_url: str, tmp_path: Path) -> None:
    with service(db_url, tmp_path) as client:
        job_id = submit(client, PBT)
        job = wait_until(client, job_id, lambda j: j["status"] in FINISHED, timeout=300)
        assert job["status"] == "completed", job
        listed = trials_of(client, job_id)
        # A member at a high rate may diverge: that is PBT's to answer (the next exploit replaces it).
        assert len(listed) == 16 and all(t["status"] in ("completed", "diverged") for t in listed), [
            (t["number"], t["status"], t["error"], t["epochs"]) for t in listed]
        assert {t["kind"] for t in listed} == {"segment"}
        population = client.get(f"/api/v1/jobs/{job_id}/population").json()
        assert population["exploits"], population  # the bottom quarter copied the top quarter
        for event in population["exploits"]:
            copied = listed[event["trial"]]
            assert copied["config"]["pbt"]["parent"] == event["from_trial"]
            assert event["lr_after"] != event["lr_before"]
            # The member's rows show the rate it trained at, the jump included.
            rows = client.get(f"/api/v1/jobs/{job_id}/trials/{event['trial']}/metrics").json()["items"]
            epochs = [r["epoch"] for r in rows]  # all 3 of its segment, or up to where it diverged
            assert epochs == list(range(event["at"], event["at"] + 3))[:3 if copied["status"] == "completed" else len(epochs)]
            assert all(r["lr"] == pytest.approx(event["lr_after"]) for r in rows)
        best = client.get(f"/api/v1/jobs/{job_id}/best").json()
        replay = best["config"]
        assert replay["schedule"] == "piecewise" and replay["lr_points"][0][0] == 0
        assert [p[1] for p in replay["lr_points"]] == sorted(
            {s["lr"] for s in best["trajectory"]}, key=[s["lr"] for s in best["trajectory"]].index)
        # Trained from scratch, the discovered schedule is followed epoch by epoch. (How close it
        # comes to the PBT best is chance: the best also inherited its weights from other members.)
        again = submit(client, {"workload": "mlp-digits", "strategy": "manual", "epochs": 12, "seed": 3,
                                "configs": [replay]})
        assert wait_until(client, again, lambda j: j["status"] in FINISHED, timeout=300)["status"] == "completed"
        rows = client.get(f"/api/v1/jobs/{again}/trials/0/metrics").json()["items"]
        expected = [[lr for at, lr in replay["lr_points"] if at <= e][-1] for e in range(12)]
        assert [r["lr"] for r in rows] == pytest.approx(expected)
