"""A user's workload package, built and installed into the environment, runs a job by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, ServiceProcess, wait_for_job_at

# The README's two example plug-ins: the folder under examples/ and the distribution it installs.
PLUGINS = {"plugin": "lrsearch-iris-plugin", "streaming-plugin": "lrsearch-digits-stream"}


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Path]]:
    """Both examples copied and pip-installed as a user does (one pip run), then one real
    `lrsearch serve` started after them, for it finds installed workloads when it starts; stopped
    and both uninstalled afterwards. Yields (the service, the streaming example's shard folder)."""
    tmp = tmp_path_factory.mktemp("plugins")
    packages = []
    for example in PLUGINS:
        packages.append(tmp / example)
        shutil.copytree(REPO / "examples" / example, packages[-1])  # as a user copies it
    shards = tmp / "shards"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", *map(str, packages)]
    try:
        subprocess.run(pip, check=True, timeout=300)
        service = ServiceProcess(f"sqlite:///{tmp / 'svc.db'}", log_path=tmp / "serve.log",
                                 env={"DIGITS_STREAM_DIR": str(shards)}).start()
        try:
            yield service, shards
        finally:
            service.stop()
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", *PLUGINS.values()],
                       check=True, timeout=300)


def test_an_installed_plugin_is_listed_and_runs_a_job(plugins: tuple[ServiceProcess, Path]) -> None:
    service, _ = plugins
    # Describing a plug-in imports it (and torch) in the service: give it time on a busy machine.
    listing = httpx.get(f"{service.url}/api/v1/workloads", timeout=120).json()["items"]
    names = {w["name"]: w["description"] for w in listing}
    assert "iris" in names["mlp-iris"]
    job = httpx.post(f"{service.url}/api/v1/jobs", json={
        "workload": "mlp-iris", "strategy": "grid", "epochs": 5,
        "space": {"lr": {"values": [0.01, 0.1]}, "optimizer": ["adam"]}}).json()
    deadline = time.monotonic() + 120
    while (job := httpx.get(f"{service.url}/api/v1/jobs/{job['id']}").json())["status"] != "completed":
        assert job["status"] in ("queued", "running"), job
        assert time.monotonic() < deadline
        time.sleep(0.3)
    metrics = httpx.get(f"{service.url}/api/v1/jobs/{job['id']}/trials/1/metrics").json()["items"]
    assert len(metrics) == 5 and metrics[-1]["val_accuracy"] > 0.8
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"]


def test_the_streaming_example_runs_a_step_job_and_a_broken_file_fails_readably(
        plugins: tuple[ServiceProcess, Path]) -> None:
    """The README's second example (batches streamed from files, its own training step), installed
    as the README says, through a real `lrsearch serve`."""
    service, shards = plugins
    listing = {w["name"]: w for w in httpx.get(f"{service.url}/api/v1/workloads", timeout=120).json()["items"]}
    assert listing["digits-stream"]["metrics"] == {"val_loss": "min", "val_accuracy": "max"}
    spec = {"workload": "digits-stream", "strategy": "random", "max_trials": 4, "steps": 60, "eval_every": 20,
            "objective": {"metric": "val_accuracy"},
            "space": {"lr": {"low": 1e-3, "high": 0.3}, "optimizer": ["adamw"], "schedule": ["cosine"]}}
    created = httpx.post(f"{service.url}/api/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = wait_for_job_at(service.url, created.json()["id"])
    assert job["status"] == "completed" and job["trial_counts"]["completed"] == 4, job
    assert sorted(p.name for p in shards.iterdir()) == [*(f"train-{i:02d}.pt" for i in range(8)), "val-00.pt"]
    rows = httpx.get(f"{service.url}/api/v1/jobs/{job['id']}/trials/0/metrics").json()["items"]
    assert [r["step"] for r in rows] == [20, 40, 60] and all(0 <= r["val_accuracy"] <= 1 for r in rows)
    assert job["best"]["objective"]["metric"] == "val_accuracy" and job["best"]["objective"]["value"] > 0.8

    # A shard that became unreadable: every trial fails with the loader's own words.
    (shards / "train-03.pt").write_bytes(b"not a tensor file")
    broken = httpx.post(f"{service.url}/api/v1/jobs", json={**spec, "max_trials": 2}).json()
    job = wait_for_job_at(service.url, broken["id"])
    assert job["status"] == "failed" and "every trial failed (2)" in job["error"], job
    errors = [t["error"] for t in httpx.get(f"{service.url}/api/v1/jobs/{job['id']}/trials").json()["items"]]
    for error in errors:
        assert "\x1b" not in error and "\n" not in error and "ray::" not in error and "Traceback" not in error
        assert error.split(":")[0] in ("UnpicklingError", "RuntimeError"), error
    cli = [sys.executable, "-m", "lrsearch.service.cli"]
    status = subprocess.run([*cli, "status", str(job["id"]), "--url", service.url],
                            capture_output=True, text=True, timeout=60)
    assert "every trial failed" in status.stderr and errors[0] in status.stderr.replace("\n", "")
    listed = subprocess.run([*cli, "trials", str(job["id"]), "--status", "failed", "--url", service.url],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "300"})
    assert listed.returncode == 0 and listed.stdout.count("UnpicklingError") == 2, listed.stdout
