"""docker-compose.yml for real: the whole stack brought up in real containers with podman-compose
(PostgreSQL, a Ray head, two Ray workers, the API), a job run through the published port on the
worker containers, a restart that keeps the store, then everything taken down.

`make test-compose` runs it (it installs podman and builds local stand-ins for the base images,
.ci/compose/setup); `make test` skips it."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(os.environ.get("LRSEARCH_TEST_COMPOSE") != "1",
                                reason="real containers: `make test-compose` runs this")

API = "http://127.0.0.1:8000"
CI = REPO / ".ci" / "compose"
PODMAN_COMPOSE = str(Path(sys.executable).parent / "podman-compose")
JOB = {"workload": "synthetic", "strategy": "grid", "epochs": 3, "max_concurrent": 4,
       "space": {"lr": {"values": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0]}}}


class Stack:
    """One compose project of docker-compose.yml (with CI's stand-in images laid over it)."""

    def __init__(self) -> None:
        self.project = "lrsearch-ci"  # a fixed name: its images are reused by the next run
        self.env = {**os.environ, "CONTAINERS_CONF": str(CI / "containers.conf"),
                    "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        # One build at a time (three services build the same image), no pod (as with Docker).
        self.command = [PODMAN_COMPOSE, "--parallel", "1", "--in-pod", "false", "-p", self.project,
                        "-f", str(REPO / "docker-compose.yml"), "-f", str(CI / "compose.ci.yml")]

    def compose(self, *args: str, timeout: float = 900) -> str:
        out = subprocess.run([*self.command, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"{' '.join(args)}: {out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out.stdout

    def podman(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, f"podman {' '.join(args)}: {out.stderr[-3000:]}"
        return out.stdout

    def containers(self, service: str | None = None, running_only: bool = True) -> list[str]:
        filters = ["--filter", f"label=io.podman.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        listing = self.podman("ps", *([] if running_only else ["-a"]), *filters, "--format", "{{.Names}}")
        return sorted(listing.split())

    def logs(self, service: str, tail: int = 200) -> str:
        """A service's container output, stdout and stderr (where its log lines go) together."""
        names = self.containers(service, running_only=False)
        if not names:
            return f"(no {service} container)"
        out = subprocess.run(["podman", "logs", "--tail", str(tail), names[0]], env=self.env, capture_output=True,
                             text=True, timeout=60)
        return out.stdout + out.stderr

    def exec(self, service: str, *command: str) -> str:
        return self.podman("exec", self.containers(service)[0], *command, timeout=180)

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=io.podman.compose.project={self.project}"
        return {"containers": self.containers(running_only=False),
                "volumes": self.podman("volume", "ls", "--filter", label, "--format", "{{.Name}}").split(),
                "networks": [n for n in self.podman("network", "ls", "--format", "{{.Name}}").split()
                             if n.startswith(self.project)],
                "pods": [n for n in self.podman("pod", "ls", "--format", "{{.Name}}").split() if self.project in n]}

    def remove_everything(self) -> None:
        """`down -v`, then anything of the project that is still there (a failed `up` leaves some)."""
        subprocess.run([*self.command, "down", "-v", "-t", "10"], cwd=REPO, env=self.env, capture_output=True,
                       timeout=300)
        left = self.leftovers()
        for name in left["containers"]:
            subprocess.run(["podman", "rm", "-f", "-t", "5", name], env=self.env, capture_output=True, timeout=120)
        for name in left["volumes"]:
            subprocess.run(["podman", "volume", "rm", "-f", name], env=self.env, capture_output=True, timeout=60)
        for name in left["pods"]:
            subprocess.run(["podman", "pod", "rm", "-f", name], env=self.env, capture_output=True, timeout=120)
        for name in left["networks"]:
            subprocess.run(["podman", "network", "rm", "-f", name], env=self.env, capture_output=True, timeout=60)


@pytest.fixture
def stack() -> Iterator[Stack]:
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", 8000)) != 0, "port 8000 is taken: the stack publishes the API there"
    stack = Stack()
    try:
        yield stack
    finally:
        stack.remove_everything()
        assert stack.leftovers() == {"containers": [], "volumes": [], "networks": [], "pods": []}


def wait_for_api(stack: Stack, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{API}/livez", timeout=3).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the API did not answer in {timeout:g} s: {stack.logs('api', 40)}")
        time.sleep(1.0)


def node_ids(stack: Stack, service: str) -> set[str]:
    """The Ray node ids of a service's containers (their raylets' --node_id)."""
    script = ("import pathlib\n"
              "for p in pathlib.Path('/proc').glob('[0-9]*/cmdline'):\n"
              "    try: args = p.read_bytes().split(b'\\0')\n"
              "    except OSError: continue\n"
              "    if args and args[0].endswith(b'raylet'):\n"
              "        print(*[a[10:].decode() for a in args if a.startswith(b'--node_id=')])\n")
    ids = set()
    for name in stack.containers(service):
        ids |= set(stack.podman("exec", name, "python", "-c", script).split())
    return ids


def sql(stack: Stack, query: str) -> str:
    return stack.exec("postgres", "psql", "-U", "lrsearch", "-d", "lrsearch", "-tAc", query).strip()


@pytest.mark.timeout(1800)
def test_the_composed_stack_runs_a_job_on_its_workers_and_keeps_it_across_a_restart(stack: Stack) -> None:
    started = time.monotonic()
    stack.compose("up", "-d", "--build")
    wait_for_api(stack)
    print(f"stack up and answering in {time.monotonic() - started:.0f} s")
    api_log = stack.logs("api")
    assert "joining it as one with no CPUs" in api_log, api_log[-3000:]

    created = stack.exec("api", "lrsearch", "keys", "create", "--scope", "admin", "--name", "ci")
    headers = {"Authorization": f"Bearer {created.split()[-1]}"}
    assert httpx.get(f"{API}/api/v1/jobs", timeout=10).status_code == 401  # published, so behind keys

    response = httpx.post(f"{API}/api/v1/jobs", json=JOB, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    deadline = time.monotonic() + 240
    while (job := httpx.get(f"{API}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json())["status"] in (
            "queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(1.0)
    assert job["status"] == "completed", job
    trials = httpx.get(f"{API}/api/v1/jobs/{job_id}/trials", headers=headers, timeout=10).json()["items"]
    assert len(trials) == len(JOB["space"]["lr"]["values"])  # type: ignore[index]

    # Every trial ran on a worker container: none on the head (no CPUs) nor the API's node (none).
    workers, head, api = node_ids(stack, "ray-worker"), node_ids(stack, "ray-head"), node_ids(stack, "api")
    assert len(workers) == 2 and head and api, (workers, head, api)
    assert {t["node"] for t in trials} <= workers, ([t["node"] for t in trials], workers)

    # The rows are in the containerised PostgreSQL.
    assert sql(stack, f"SELECT count(*) FROM trials WHERE job_id = {job_id}") == str(len(trials))
    assert int(sql(stack, f"SELECT count(*) FROM metrics m JOIN trials t ON t.id = m.trial_id "
                          f"WHERE t.job_id = {job_id}")) == sum(t["epochs"] for t in trials) > 0

    # down keeps the volumes: a second up still has the first job (and the key).
    stack.compose("down", "-t", "10")
    assert stack.containers(running_only=False) == []
    stack.compose("up", "-d")
    wait_for_api(stack)
    listed: dict[str, Any] = httpx.get(f"{API}/api/v1/jobs", headers=headers, timeout=10).json()
    assert [(j["id"], j["status"]) for j in listed["items"]] == [(job_id, "completed")], json.dumps(listed)[:2000]
    print(f"whole run {time.monotonic() - started:.0f} s")
