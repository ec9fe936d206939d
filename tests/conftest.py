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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lrsearch.workers.ray_cluster import RayStartProcess

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


# Session-scoped resources that several modules share (a service, a cluster, a browser), stopped
# right after the last test of the run that uses them rather than at the run's end: (fixture name,
# folder of the conftest that defines it, stop). Kept on the session, not in this module: pytest
# loads this file as `conftest` while tests import it as `tests.conftest`, two module objects.
StopEntry = tuple[str, Path, Callable[[], None]]


def _stops(session: pytest.Session) -> list[StopEntry]:
    stops: list[StopEntry] = session.__dict__.setdefault("lrsearch_stop_after_last_use", [])
    return stops


def stop_after_last_use(request: pytest.FixtureRequest, folder: Path, stop: Callable[[], None]) -> None:
    """Have ``stop`` called right after the last test of this run that uses the fixture asking (a test
    under ``folder``, where the fixture is defined); the fixture's own teardown still calls it at
    the end, so it must be safe to call twice."""
    _stops(request.session).append((request.fixturename, folder, stop))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        return (yield)  # the test's own fixtures are torn down first
    finally:  # also when that teardown failed: a resource nobody uses any more must not run on
        stops = _stops(item.session)
        if stops:
            items = item.session.items
            later = items[items.index(item) + 1:] if item in items else []
            for entry in list(stops):
                name, folder, stop = entry
                if not any(name in getattr(i, "fixturenames", ()) and folder in i.path.parents for i in later):
                    stops.remove(entry)
                    stop()


def once(stop: Callable[[], None]) -> Callable[[], None]:
    """``stop``, run at most once however often it is called."""
    done: list[bool] = []

    def run() -> None:
        if not done:
            done.append(True)
            stop()

    return run


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


def _skip_without_pg(pg_reason: str | None) -> None:
    if pg_reason:
        print(f"skipping PostgreSQL: {pg_reason}")
        pytest.skip(f"PostgreSQL unreachable ({pg_reason}); CI runs these")


@pytest.fixture
def pg_url(pg_reason: str | None) -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards (skips with a printed reason outside CI)."""
    _skip_without_pg(pg_reason)
    name, url = make_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The store's backend: every test that asks for a store runs on SQLite and on PostgreSQL."""
    return request.param


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of its own: a SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'lrsearch.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def pg_run_database(pg_reason: str | None) -> Iterator[str]:
    """One PostgreSQL database for the whole run, dropped at its end: its schemas are the stores of
    the in-process app's tests (see app_db_url)."""
    _skip_without_pg(pg_reason)
    name, _ = make_pg_database()
    try:
        yield name
    finally:
        drop_pg_database(name)


@pytest.fixture
def app_db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store for the in-process app (``client``, ``api_only``): a SQLite file, or on
    PostgreSQL a new schema of this run's database, which the app's connections use alone
    (search_path) and which is dropped afterwards. A schema costs a fraction of a new database
    (CREATE DATABASE copies a template and waits for its disk writes), and the store is as empty.
    A test that also asks for ``db_url`` (to read or change the store behind the app's back) gets
    that database, so both are one store."""
    if "db_url" in request.fixturenames:
        yield request.getfixturevalue("db_url")
        return
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'lrsearch.db'}"
        return
    database = request.getfixturevalue("pg_run_database")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    import psycopg

    def run(sql: str) -> None:
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database, autocommit=True,
                             connect_timeout=10) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(sql)

    run(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}?options=-csearch_path%3D{schema}"
    finally:
        try:
            run(f'DROP SCHEMA "{schema}" CASCADE')
        except psycopg.Error as exc:  # a connection the test left open: the run's database goes at its end
            print(f"schema {schema} left to the end of the run: {exc}")


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
        try:
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
                time.sleep(0.1)
            raise TimeoutError(f"lrsearch serve not healthy after {timeout} s")
        except BaseException:
            # The caller gets no service to stop when start fails (or is interrupted): stop it here.
            self.stop()
            raise

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


class RayNode(RayStartProcess):
    """`ray start --block` in its own process group: stopping it stops that node's processes only."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        super().__init__(args, log, env)

    def stop(self, grace: float = 0.0) -> None:
        super().stop(grace)  # a test's node: nothing to save


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


@pytest.fixture(scope="session")
def two_node_cluster(request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A real two-node `ray start` cluster, one CPU per node: (address, env for its clients).

    Started once for the run (about 9 s each time) and stopped after the last test that uses it:
    its tests join it with a service of their own and stop that service, whose actors Ray ends
    with it; none of them kills a node."""
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(ray_cluster(tmp_path_factory.mktemp("two-node-cluster"), [1, 1]))
        stop_after_last_use(request, REPO / "tests", once(stack.close))
        yield cluster
