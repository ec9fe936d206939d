"""A service joined to an existing two-node Ray cluster (started with `ray start`) places trials on both."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import ServiceProcess


def test_trials_run_on_both_nodes(db_url: str, two_node_cluster: tuple[str, dict[str, str]],
                                  tmp_path: Path) -> None:
    address, env = two_node_cluster
    service = ServiceProcess(db_url, env={**env, "RAY_ADDRESS": address}, log_path=tmp_path / "serve.log")
    service.start()
    try:
        spec = {"workload": "mlp-digits", "strategy": "grid", "epochs": 6, "max_concurrent": 2,
                "space": {"lr": {"values": [0.003, 0.01, 0.03, 0.1, 0.2, 0.3]}}}
        job = httpx.post(f"{service.url}/api/v1/jobs", json=spec).json()
        deadline = time.monotonic() + 120
        while httpx.get(f"{service.url}/api/v1/jobs/{job['id']}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.3)
        trials = httpx.get(f"{service.url}/api/v1/jobs/{job['id']}/trials").json()["items"]
        assert len(trials) == 6 and all(t["status"] == "completed" for t in trials)
        nodes = {t["node"] for t in trials}
        assert len(nodes) == 2 and None not in nodes
        health = httpx.get(f"{service.url}/api/v1/healthz").json()
        assert "2 node" in health["ray"]
    finally:
        service.stop()
