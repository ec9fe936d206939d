"""A trial whose Ray worker process is killed resumes from its checkpoint, each epoch stored once."""

from __future__ import annotations

import os
import signal
import time

import ray
from fastapi.testclient import TestClient

from tests.service.conftest import wait_for_job


def test_killed_worker_resumes_from_checkpoint(client: TestClient) -> None:
    client.app.state.settings.checkpoint_every = 1  # type: ignore[attr-defined]  # TestClient.app is a bare ASGI app; every epoch
    epochs = 60
    job = client.post("/api/v1/jobs", json={"workload": "mlp-digits", "strategy": "manual", "epochs": epochs,
                                            "configs": [{"lr": 0.02}]}).json()
    runner = client.app.state.runner  # type: ignore[attr-defined]  # TestClient.app is typed as a bare ASGI app

    def worker_progress() -> tuple[int, int] | None:
        """(epochs the worker has trained, its pid), once the trial is on a worker. The worker
        streams ahead of what the store holds, so it is asked, not the API."""
        execution = runner._executions.get(job["id"])
        for key in list(execution._running_keys) if execution is not None else []:
            actors = runner.executor._running.get(key)
            if actors:
                info = ray.get(actors[0].info.remote())
                return info["epochs_done"].get(key, 0), info["pid"]
        return None

    deadline = time.monotonic() + 60
    while (progress := worker_progress()) is None or progress[0] < 5:  # a few epochs in
        assert time.monotonic() < deadline
        time.sleep(0.005)
    killed_at, pid = progress
    os.kill(pid, signal.SIGKILL)
    assert killed_at < epochs

    job = wait_for_job(client, job["id"])
    (trial,) = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert trial["status"] == "completed" and trial["attempts"] == 2, trial
    metrics = client.get(f"/api/v1/jobs/{job['id']}/trials/0/metrics").json()["items"]
    assert [m["epoch"] for m in metrics] == list(range(epochs))  # every epoch exactly once

    # Resuming from the checkpoint trains exactly as the uninterrupted run would.
    again = wait_for_job(client, client.post("/api/v1/jobs", json={
        "workload": "mlp-digits", "strategy": "manual", "epochs": epochs, "configs": [{"lr": 0.02}]}).json()["id"])
    clean = client.get(f"/api/v1/jobs/{again['id']}/trials/0/metrics").json()["items"]
    assert [m["val_loss"] for m in clean] == [m["val_loss"] for m in metrics]


def test_a_killed_data_parallel_worker_is_a_lost_worker(client: TestClient) -> None:
    """SIGKILL of one rank of a two-worker trial mid-trial: the trial is retried from its last
    checkpoint and the job completes with every epoch stored once."""
    client.app.state.settings.checkpoint_every = 1  # type: ignore[attr-defined]  # TestClient.app is a bare ASGI app
    epochs = 40
    job = client.post("/api/v1/jobs", json={"workload": "mlp-digits", "strategy": "manual", "epochs": epochs,
                                            "resources": {"workers": 2},
                                            "configs": [{"lr": 0.02}]}).json()
    deadline = time.monotonic() + 60
    while not (trial := client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]) or \
            not trial[0]["workers"] or trial[0]["epochs"] < 3:
        assert time.monotonic() < deadline, trial
        time.sleep(0.01)
    os.kill(trial[0]["workers"][1]["pid"], signal.SIGKILL)  # rank 1, not the one that reports
    job = wait_for_job(client, job["id"])
    (trial,) = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert job["status"] == "completed" and trial["status"] == "completed" and trial["attempts"] == 2, trial
    metrics = client.get(f"/api/v1/jobs/{job['id']}/trials/0/metrics").json()["items"]
    assert [m["epoch"] for m in metrics] == list(range(epochs))
