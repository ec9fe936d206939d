"""Shared fixtures: a real local Ray (num_cpus=2), real SQLite files and the real PostgreSQL.

Tests that need PostgreSQL run in CI (CI=true); elsewhere they skip with a printed reason
when no server answers on 127.0.0.1:5432.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest

PG_HOST = os.environ.get("LRSEARCH_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("LRSEARCH_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("LRSEARCH_TEST_PG_USER", "postgres")
REPO = Path(__file__).resolve().parent.parent
BACKENDS = ["sqlite", "postgresql"]


def _pg_admin_conn():
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres",
                           autocommit=True, connect_timeout=3)


def _pg_available() -> str | None:
    """None if PostgreSQL answers, else why not."""
    try:
        with _pg_admin_conn():
            return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"


@pytest.fixture(scope="session")
def pg_reason() -> str | None:
    reason = _pg_available()
    if reason and os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI but unreachable at {PG_HOST}:{PG_PORT}: {reason}")
    return reason


def make_pg_database() -> tuple[str, str]:
    name = f"lrsearch_test_{uuid.uuid4().hex[:12]}"
    with _pg_admin_conn() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def drop_pg_database(name: str) -> None:
    with _pg_admin_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_reason: str | None) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards (skips with a printed reason outside CI)."""
    if pg_reason:
        print(f"skipping PostgreSQL: {pg_reason}")
        pytest.skip(f"PostgreSQL unreachable ({pg_reason}); CI runs these")
    name, url = make_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lrsearch.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def ray_executor() -> Iterator[object]:
    """One real local Ray for the whole run, with a shared actor pool (actors live across tests)."""
    import ray

    from lrsearch.workers.ray_executor import RayExecutor

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=128 * 1024**2)
    executor = RayExecutor()
    executor.start()
    yield executor
    executor.shutdown()
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServiceProcess:
    """A real ``lrsearch serve`` in its own process group (so its local Ray dies with it)."""

    def __init__(self, db_url: str, port: int | None = None, num_cpus: int = 2,
                 env: dict[str, str] | None = None, log_path: Path | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.extra_args = extra_args or []
        self.db_url = db_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.num_cpus = num_cpus
        import tempfile

        self.env = {"LRSEARCH_DATA_DIR": tempfile.mkdtemp(prefix="lrsearch-data-"), **os.environ, **(env or {})}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> ServiceProcess:
        import httpx

        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lrsearch.service.cli", "serve", "--port", str(self.port), "--db", self.db_url,
             *([] if "RAY_ADDRESS" in self.env else ["--num-cpus", str(self.num_cpus)]), "--log-level", "warning", *self.extra_args],
            cwd=REPO, env=self.env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lrsearch serve exited with {self.proc.returncode}; see {self.log_path}")
            try:
                # Under --auth an answer of 401 also says the service is up.
                if httpx.get(f"{self.url}/api/v1/healthz", timeout=2).status_code in (200, 401):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"lrsearch serve not healthy after {timeout} s")

    def kill(self, sig: int, group: bool = True) -> None:
        """Signal the service, or its whole process group (the service and the local Ray it started)."""
        assert self.proc is not None
        try:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM, group=False)  # graceful: the service shuts its own Ray down
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, 9)  # leftovers of the process group, if any
            except ProcessLookupError:
                pass


class RayNode:
    """`ray start --block` in its own process group: stopping it stops that node's processes only."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--block",
                                      "--disable-usage-stats", *args], env=env,
                                     stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        import signal

        # The node's processes (raylet, gcs, workers) are in this process group; nothing to save.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)


def wait_for_nodes(address: str, env: dict[str, str], count: int, timeout: float = 90.0) -> None:
    """Block until ``count`` Ray nodes are alive (one client process that polls, connecting once)."""
    code = ("import ray, sys, time\n"
            f"deadline = time.monotonic() + {timeout}\n"
            "while True:\n"
            "    try:\n"
            f"        ray.init(address='{address}', log_to_driver=False); break\n"
            "    except Exception:\n"
            "        if time.monotonic() > deadline: sys.exit(2)\n"
            "        time.sleep(0.5)\n"
            f"while len([n for n in ray.nodes() if n['Alive']]) < {count}:\n"
            "    if time.monotonic() > deadline: sys.exit(3)\n"
            "    time.sleep(0.2)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=timeout + 30)
    assert out.returncode == 0, f"{count} Ray node(s) not alive at {address}: {out.stderr[-2000:]}"


@contextlib.contextmanager
def ray_cluster(tmp_path: Path, node_cpus: list[int]) -> Iterator[tuple[str, dict[str, str]]]:
    """A real Ray cluster started with `ray start` (a head and more nodes on this machine), with
    Ray's token authentication on, as in production. Yields (address, env for its clients)."""
    import secrets

    token = tmp_path / "ray_token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    port = free_port()
    address = f"127.0.0.1:{port}"
    nodes = [RayNode(["--head", f"--port={port}", f"--num-cpus={node_cpus[0]}", "--include-dashboard=false",
                      "--node-ip-address=127.0.0.1"], env, tmp_path / "ray-head.log")]
    try:
        for i, cpus in enumerate(node_cpus[1:]):
            # `ray start --address` waits for the head by itself.
            nodes.append(RayNode([f"--address={address}", f"--num-cpus={cpus}", "--node-ip-address=127.0.0.1"],
                                 env, tmp_path / f"ray-node-{i}.log"))
        wait_for_nodes(address, env, len(node_cpus))
        yield address, env
    finally:
        for node in reversed(nodes):
            node.stop()


def wait_for_job_at(url: str, job_id: int, timeout: float = 180.0) -> dict[str, Any]:
    """Poll a real service until job ``job_id`` has ended; its final Job."""
    import httpx

    deadline = time.monotonic() + timeout
    while (job := httpx.get(f"{url}/api/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    return job


@pytest.fixture
def two_node_cluster(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real two-node `ray start` cluster, one CPU per node: (address, env for its clients)."""
    with ray_cluster(tmp_path, [1, 1]) as cluster:
        yield cluster
