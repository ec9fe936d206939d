"""A user's workload package, built and installed into the environment, runs a job by name."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REPO, ServiceProcess


def test_an_installed_plugin_is_listed_and_runs_a_job(tmp_path: Path) -> None:
    package = tmp_path / "plugin"
    shutil.copytree(REPO / "examples" / "plugin", package)  # the README's example, as a user copies it
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(package)]
    subprocess.run(pip, check=True, timeout=300)
    try:
        service = ServiceProcess(f"sqlite:///{tmp_path / 'svc.db'}", log_path=tmp_path / "serve.log").start()
        try:
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
        finally:
            service.stop()
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "-y", "lrsearch-iris-plugin"],
                       check=True, timeout=300)
