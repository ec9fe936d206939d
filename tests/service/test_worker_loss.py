"""A trial whose Ray worker process is killed resumes from its checkpoint, each epoch stored once."""

from __future__ import annotations

import os
import signal
import time

import ray
from fastapi.testclient import TestClient

from tests.service.conftest import wait_for_job


def test_killed_worker_resumes_from_checkpoint(client: TestClient) -> None:
    client.app.state.settings.checkpoint_every = 1  # type: ignore[attr-defined]  # every epoch, for the test
    epochs = 60
    job = client.post("/api/v1/jobs", json={"workload": "mlp-digits", "strategy": "manual", "epochs": epochs,
                                            "configs": [{"lr": 0.02}]}).json()
    runner = client.app.state.runner  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while True:  # wait until the trial is a few epochs in
        trial = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
        if trial and trial[0]["epochs"] >= 5:
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    execution = runner._executions[job["id"]]
    (key,) = execution._running_keys
    actor = runner.executor._running[key]
    pid = ray.get(actor.info.remote())["pid"]
    os.kill(pid, signal.SIGKILL)
    killed_at = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"][0]["epochs"]

    job = wait_for_job(client, job["id"])
    (trial,) = client.get(f"/api/v1/jobs/{job['id']}/trials").json()["items"]
    assert trial["status"] == "completed" and trial["attempts"] == 2, trial
    metrics = client.get(f"/api/v1/jobs/{job['id']}/trials/0/metrics").json()["items"]
    assert [m["epoch"] for m in metrics] == list(range(epochs))  # every epoch exactly once
    assert killed_at < epochs

    # Resuming from the checkpoint trains exactly as the uninterrupted run would.
    again = wait_for_job(client, client.post("/api/v1/jobs", json={
        "workload": "mlp-digits", "strategy": "manual", "epochs": epochs, "configs": [{"lr": 0.02}]}).json()["id"])
    clean = client.get(f"/api/v1/jobs/{again['id']}/trials/0/metrics").json()["items"]
    assert [m["val_loss"] for m in clean] == [m["val_loss"] for m in metrics]
