"""A real `lrsearch serve` process, stopped and started again on the same database.

Here the process dies for real (SIGTERM: a graceful stop; SIGKILL of its whole process group, its
Ray included). That every strategy rebuilds its search from the store after a stop is shown on
the in-process executor, strategy by strategy (tests/service/test_job_execution.py); here: the
plainest job, and `auto`, the one with the most state (range tests, then windows and a stopper).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServiceProcess

pytestmark = pytest.mark.restarts  # `make test-restarts`

SPEC = {"name": "restart", "workload": "mlp-digits", "strategy": "random", "max_trials": 10,
        "max_concurrent": 2, "epochs": 12, "seed": 3, "space": {"lr": {"low": 1e-3, "high": 0.3},
                                                                "optimizer": ["sgd", "adam"]}}


def snapshot(url: str, job_id: int) -> dict:
    """Every trial and metric of a job, as the API answers them."""
    trials = httpx.get(f"{url}/api/v1/jobs/{job_id}/trials").json()["items"]
    return {t["number"]: (t, httpx.get(f"{url}/api/v1/jobs/{job_id}/trials/{t['number']}/metrics").json()["items"])
            for t in trials}


def wait_until(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


BAYES = {**SPEC, "strategy": "bayesian", "early_stopping": {"kind": "asha", "grace_epochs": 2, "reduction_factor": 2}}
# Two range tests, then bayesian + ASHA inside their windows (r = 2, as BAYES: with auto's default r = 3
# most trials stop after 2 epochs and the job can end between two polls).
AUTO = {**SPEC, "strategy": "auto", "space": {"lr": {"low": 1e-5, "high": 1.0}, "optimizer": ["sgd", "adam"]},
        "options": {"num_steps": 40}, "early_stopping": BAYES["early_stopping"]}
SPECS = {"random": SPEC, "auto": AUTO}


@pytest.mark.parametrize(("strategy", "how"), [("random", "sigterm"), ("auto", "sigkill")])
def test_restart_keeps_everything_and_finishes_the_running_job(db_url: str, tmp_path: Path, strategy: str,
                                                               how: str) -> None:
    spec = SPECS[strategy]
    log = tmp_path / "serve.log"
    # A short lease so a job whose owner was killed is taken over quickly.
    env = {"LRSEARCH_LEASE_SECONDS": "3", "LRSEARCH_POLL_INTERVAL": "0.2"}
    service = ServiceProcess(db_url, env=env, log_path=log).start()
    try:
        done = httpx.post(f"{service.url}/api/v1/jobs", json={**SPEC, "name": "finished-before", "max_trials": 2,
                                                              "epochs": 2}).json()
        wait_until(lambda: httpx.get(f"{service.url}/api/v1/jobs/{done['id']}").json()["status"] == "completed",
                   60, "first job")
        before_done = snapshot(service.url, done["id"])
        job = httpx.post(f"{service.url}/api/v1/jobs", json=spec).json()

        def some_finished() -> bool:
            # Mid-job: two trials ended, the job has more to run (a trial may be between slots).
            j = httpx.get(f"{service.url}/api/v1/jobs/{job['id']}").json()
            ended = j["trial_counts"]["completed"] + j["trial_counts"]["pruned"]
            return 2 <= ended < spec["max_trials"] and j["status"] == "running"

        wait_until(some_finished, 90, "trials to finish")
        if how == "sigterm":
            service.kill(signal.SIGTERM, group=False)
        else:
            service.kill(signal.SIGKILL, group=True)
        assert service.proc is not None and service.proc.poll() is not None
    finally:
        service.stop()

    service = ServiceProcess(db_url, env=env, log_path=log).start()
    try:
        url = service.url
        mid = snapshot(url, job["id"])
        finished_mid = {n: v for n, v in mid.items() if v[0]["status"] in ("completed", "pruned")}
        assert len(finished_mid) >= 2
        assert snapshot(url, done["id"]) == before_done  # an ended job is untouched

        wait_until(lambda: httpx.get(f"{url}/api/v1/jobs/{job['id']}").json()["status"] == "completed",
                   120, "the interrupted job to finish after the restart")
        after = snapshot(url, job["id"])
        assert sorted(after) == list(range(10))  # exactly max_trials, numbers never reused
        range_tests = [n for n, (t, _) in after.items() if "range_test" in t["config"]]
        assert range_tests == ([0, 1] if strategy == "auto" else [])
        for number, (trial, metrics) in after.items():
            assert trial["status"] in (("completed",) if strategy == "random" else ("completed", "pruned"))
            if number not in range_tests:  # a range test's curve is its own record, not metric rows
                assert [m["epoch"] for m in metrics] == list(range(trial["epochs"]))  # every epoch exactly once
            assert trial["epochs"] == 12 or trial["status"] == "pruned" or number in range_tests
        for number, (trial, metrics) in finished_mid.items():
            assert after[number] == (trial, metrics)  # finished trials unchanged
        # No candidate twice.
        lrs = [after[n][0]["config"]["lr"] for n in range(10) if n not in range_tests]
        assert len(set(lrs)) == len(lrs)
        jobs = httpx.get(f"{url}/api/v1/jobs").json()
        assert jobs["total"] == 2
    finally:
        service.stop()
