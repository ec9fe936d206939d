"""A service joined to an existing two-node Ray cluster (started with `ray start`) places trials on both."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServiceProcess, free_port


class RayNode:
    """`ray start --block` in its own process group: stopping it stops that node's processes only."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        ray_bin = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "ray"
        exe = str(ray_bin) if ray_bin.exists() else str(Path(__import__("sys").executable).parent / "ray")
        self.proc = subprocess.Popen([exe, "start", "--block", "--disable-usage-stats", *args], env=env,
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def two_node_cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    # Ray's token authentication on, as in production: only holders of the token may connect.
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = free_port()
    address = f"127.0.0.1:{port}"
    head = RayNode(["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                    "--node-ip-address=127.0.0.1"], env, tmp_path / "head.log")
    nodes = [head]
    try:
        import ray

        # Wait for the head, then add a worker node.
        deadline = time.monotonic() + 60
        while subprocess.run([str(Path(__import__("sys").executable).parent / "ray"), "status",
                              f"--address={address}"], env=env, capture_output=True).returncode != 0:
            assert time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-2000:]
            time.sleep(0.5)
        nodes.append(RayNode([f"--address={address}", "--num-cpus=1", "--node-ip-address=127.0.0.1"], env,
                             tmp_path / "worker.log"))
        deadline = time.monotonic() + 60
        while "2 node" not in _nodes_line(address, env):
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.5)
        del ray
        yield address, env
    finally:
        for node in reversed(nodes):
            node.stop()


def _nodes_line(address: str, env: dict[str, str]) -> str:
    import sys

    out = subprocess.run([sys.executable, "-c", "import ray; ray.init(address='%s', log_to_driver=False); "
                          "print(len([n for n in ray.nodes() if n['Alive']]), 'node')" % address],
                         env=env, capture_output=True, text=True, timeout=60)
    return out.stdout


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
