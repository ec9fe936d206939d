"""docker-compose.yml, checked without a Docker engine: every command parses with the real CLIs,
env and ports agree with the CLI, and the services' commands start natively (hosts and ports
mapped to this machine)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer
import yaml

from tests.conftest import REPO, RayNode, ServiceProcess, free_port, wait_for_nodes

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_ray_is_private_and_authenticated() -> None:
    for name in ("ray-head", "ray-worker", "api"):
        env = SERVICES[name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?")


def test_services_and_scaling() -> None:
    assert {"postgres", "ray-head", "ray-worker", "api"} <= set(SERVICES)
    worker = SERVICES["ray-worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale ray-worker=N works
    assert SERVICES["api"]["ports"] == ["8000:8000"]
    assert "ports" not in SERVICES["ray-head"]  # Ray stays on the private compose network


def test_api_command_parses_with_the_real_cli() -> None:
    from lrsearch.service.cli import app

    command = SERVICES["api"]["command"]
    assert command[:2] == ["lrsearch", "serve"]
    group = typer.main.get_command(app)
    serve = group.get_command(None, "serve")  # type: ignore[attr-defined]  # typer builds a Group for an app of commands
    ctx = serve.make_context("serve", list(command[2:]))
    assert ctx.params["port"] == 8000
    assert ctx.params["host"] == "0.0.0.0" and ctx.params["auth"] is True  # public, so behind keys
    db = ctx.params["db"]
    env = SERVICES["api"]["environment"]
    assert db == env["LRSEARCH_DATABASE_URL"] and ctx.params["ray_address"] == env["RAY_ADDRESS"]
    pg = SERVICES["postgres"]["environment"]
    assert f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@postgres:5432/{pg['POSTGRES_DB']}" in db
    assert ctx.params["ray_address"].split(":")[0] == "ray-head"
    head_port = next(a for a in SERVICES["ray-head"]["command"] if a.startswith("--port="))
    assert ctx.params["ray_address"].endswith(":" + head_port.split("=")[1])


@functools.cache
def ray_start_help() -> str:
    """The real `ray start --help` (asked once: the CLI takes seconds to import Ray)."""
    return subprocess.run([str(Path(sys.executable).parent / "ray"), "start", "--help"],
                          capture_output=True, text=True, timeout=60).stdout


@pytest.mark.parametrize("service", ["ray-head", "ray-worker"])
def test_ray_commands_use_real_flags(service: str) -> None:
    command = SERVICES[service]["command"]
    assert command[:2] == ["ray", "start"]
    help_text = ray_start_help()
    for arg in command[2:]:
        flag = arg.split("=")[0]
        assert flag in help_text, f"{service}: {flag} is not a `ray start` flag"


def _native(command: list[str], mapping: dict[str, str]) -> list[str]:
    out = []
    for arg in command:
        for old, new in mapping.items():
            arg = arg.replace(old, new)
        out.append(arg)
    return out


def test_the_stack_starts_natively(tmp_path: Path) -> None:
    """ray-head, a ray-worker and the api with their compose commands, hosts and ports mapped here."""
    import secrets

    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = free_port()
    mapping = {"ray-head:6379": f"127.0.0.1:{port}", "--port=6379": f"--port={port}"}
    head_cmd = _native(SERVICES["ray-head"]["command"], mapping)
    worker_cmd = _native(SERVICES["ray-worker"]["command"], mapping)
    assert head_cmd[:2] == worker_cmd[:2] == ["ray", "start"]
    nodes = [RayNode([a for a in head_cmd[2:] if a != "--block"] + ["--node-ip-address=127.0.0.1"], env,
                     tmp_path / "head.log")]
    try:
        nodes.append(RayNode([a for a in worker_cmd[2:] if a != "--block"]
                             + ["--num-cpus=2", "--node-ip-address=127.0.0.1"], env, tmp_path / "worker.log"))
        wait_for_nodes(f"127.0.0.1:{port}", env, 2)
        api_cmd = SERVICES["api"]["command"]
        assert api_cmd[api_cmd.index("--ray-address") + 1] == "ray-head:6379"
        service = ServiceProcess(f"sqlite:///{tmp_path / 'api.db'}", env={**env, "RAY_ADDRESS": f"127.0.0.1:{port}"},
                                 log_path=tmp_path / "api.log").start()
        try:
            job = httpx.post(f"{service.url}/api/v1/jobs", json={
                "workload": "synthetic", "strategy": "grid", "epochs": 2,
                "space": {"lr": {"values": [0.01, 0.1]}}}).json()
            deadline = time.monotonic() + 90
            while httpx.get(f"{service.url}/api/v1/jobs/{job['id']}").json()["status"] != "completed":
                assert time.monotonic() < deadline
                time.sleep(0.3)
            # The head has no CPUs (--num-cpus=0): every trial ran on the worker node.
            nodes_used = {t["node"] for t in httpx.get(f"{service.url}/api/v1/jobs/{job['id']}/trials").json()["items"]}
            assert len(nodes_used) == 1
        finally:
            service.stop()
    finally:
        for node in reversed(nodes):
            node.stop()
