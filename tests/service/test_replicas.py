"""Several `lrsearch serve` replicas on one PostgreSQL and one Ray cluster share the work safely.

Replicas claim whole jobs with a conditional update (one winner per job) and hold them through a
lease; the training itself runs on the shared Ray cluster whichever replica drives the job. A
replica that dies loses its lease and another takes its jobs over.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServiceProcess, ray_cluster

pytestmark = pytest.mark.restarts  # `make test-restarts`


def wait_jobs(url: str, ids: list[int], timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [httpx.get(f"{url}/api/v1/jobs/{i}").json() for i in ids]
        if all(j["status"] in ("completed", "failed", "cancelled") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, jobs
        time.sleep(0.3)


def check_each_trial_ran_once(url: str, job_id: int, trials_expected: int, epochs: int) -> None:
    trials = httpx.get(f"{url}/api/v1/jobs/{job_id}/trials").json()["items"]
    assert [t["number"] for t in trials] == list(range(trials_expected))
    for t in trials:
        assert t["status"] == "completed", t
        metrics = httpx.get(f"{url}/api/v1/jobs/{job_id}/trials/{t['number']}/metrics").json()["items"]
        assert [m["epoch"] for m in metrics] == list(range(epochs)), (t, metrics)


def test_two_replicas_share_jobs_and_take_over(pg_url: str, tmp_path: Path) -> None:
    env_common = {"LRSEARCH_LEASE_SECONDS": "3", "LRSEARCH_POLL_INTERVAL": "0.2",
                  # one job at a time per replica, so the second replica must take the next one
                  "LRSEARCH_MAX_RUNNING_JOBS": "1", "LRSEARCH_PREWARM_ACTORS": "0"}
    with ray_cluster(tmp_path, [2]) as (address, ray_env):
        env = {**ray_env, **env_common, "RAY_ADDRESS": address}
        a = ServiceProcess(pg_url, env=env, log_path=tmp_path / "a.log").start()
        b = ServiceProcess(pg_url, env=env, log_path=tmp_path / "b.log").start()
        try:
            shared = {"name": "shared-12", "workload": "mlp-digits", "strategy": "random", "max_trials": 12,
                      "max_concurrent": 1, "epochs": 4, "space": {"lr": {"low": 1e-3, "high": 0.3}}}
            small = {**shared, "name": "small", "max_trials": 3}
            ids = [httpx.post(f"{a.url}/api/v1/jobs", json=shared).json()["id"],
                   httpx.post(f"{b.url}/api/v1/jobs", json=small).json()["id"],
                   httpx.post(f"{a.url}/api/v1/jobs", json=small).json()["id"]]
            jobs = wait_jobs(a.url, ids, 240)
            assert [j["status"] for j in jobs] == ["completed"] * 3
            owners = {j["owner"].rsplit(":", 2)[-2] for j in jobs}  # the pid part
            assert len(owners) == 2, jobs  # both replicas drove jobs
            check_each_trial_ran_once(a.url, ids[0], 12, 4)
            for i in ids[1:]:
                check_each_trial_ran_once(b.url, i, 3, 4)

            # Fail-over: kill whichever replica drives a new long job; the other finishes it.
            long = {**shared, "name": "failover", "max_trials": 6, "epochs": 12}
            job_id = httpx.post(f"{a.url}/api/v1/jobs", json=long).json()["id"]
            deadline = time.monotonic() + 60
            while True:
                job = httpx.get(f"{a.url}/api/v1/jobs/{job_id}").json()
                if job["owner"] and job["trial_counts"]["completed"] >= 2:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.1)
            owner_pid = int(job["owner"].rsplit(":", 2)[-2])
            victim, survivor = (a, b) if a.proc is not None and a.proc.pid == owner_pid else (b, a)
            assert victim.proc is not None and victim.proc.pid == owner_pid
            victim.kill(signal.SIGKILL, group=True)
            (job,) = wait_jobs(survivor.url, [job_id], 180)
            assert job["status"] == "completed"
            assert int(job["owner"].rsplit(":", 2)[-2]) == survivor.proc.pid  # type: ignore[union-attr]  # a started service has a process
            check_each_trial_ran_once(survivor.url, job_id, 6, 12)
        finally:
            a.stop()
            b.stop()
