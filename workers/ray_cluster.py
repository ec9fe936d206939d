"""How the service reaches a Ray cluster it did not start (``--ray-address HOST:PORT``).

A Ray driver must run on a node of its cluster: ``ray.init(address=...)`` on any other machine
(an API container, a laptop) waits a minute and fails ("No node info found"). So the service
waits for the cluster's head to answer, and where this machine is not one of its nodes it joins
as a node with no CPUs and no GPUs: no trial runs here, and the service stops that node when it
stops. Ray Client (``ray://``) is refused with what to do instead: it cannot stream an actor
method's results, which is how every trial reports (measured in bench/ray_join.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrsearch.waiting import wait_until

log = logging.getLogger(__name__)

# A joined node's object store: trials send back small results and checkpoints; keep it small.
JOINED_OBJECT_STORE_BYTES = 256 * 1024**2


class RayUnavailable(Exception):
    """The cluster cannot be used from here; the message says what to do."""


@dataclass(frozen=True)
class HeadAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(address: str) -> HeadAddress | None:
    """HOST:PORT as a HeadAddress; None for "auto" (Ray finds a cluster started on this machine).
    Raises RayUnavailable for what cannot work: Ray Client, or no port."""
    if address == "auto":
        return None
    if address.startswith("ray://"):
        head = address.removeprefix("ray://").rsplit(":", 1)[0]
        raise RayUnavailable(
            f"--ray-address {address} is a Ray Client address, and Ray Client cannot stream an actor's results, "
            f"which is how trials report. Run lrsearch serve where it can join the cluster as a node: "
            f"--ray-address {head}:6379 (the head's GCS port; the service joins as a node with no CPUs), "
            "or run it on a node of the cluster.")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RayUnavailable(f"--ray-address {address!r} is not HOST:PORT (the head's GCS address, e.g. "
                             "ray-head:6379)")
    return HeadAddress(host.strip("[]"), int(port))


def wait_for_head(head: HeadAddress, wait_seconds: float) -> None:
    """Block until the head's GCS port takes a connection, saying so every few seconds.
    Raises RayUnavailable after ``wait_seconds``."""

    def refused() -> str | None:
        try:
            socket.create_connection((head.host, head.port), timeout=2.0).close()
            return None
        except OSError as exc:
            return exc.strerror or type(exc).__name__

    wait_until(refused, wait_seconds, f"the Ray cluster at {head}", log=log,
               give_up=lambda reason: RayUnavailable(
                   f"no Ray cluster answers at {head} ({reason}; waited {wait_seconds:g} s). Start its head there "
                   f"(`ray start --head --port={head.port}`), or point --ray-address (RAY_ADDRESS) at a running "
                   "head's GCS address; leave it out to run trials on a Ray the service starts itself."))


def _psutil() -> Any:
    """psutil as Ray ships it (importing Ray puts it on the path; it is not a dependency of ours)."""
    import importlib

    import ray  # noqa: F401

    return importlib.import_module("psutil")


def _addresses_of(host: str) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except OSError:
        return {host}


def _own_addresses() -> set[str]:
    return {a.address.split("%")[0] for nic in _psutil().net_if_addrs().values() for a in nic}


def _is_local(address: str, own: set[str]) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback or address in own
    except ValueError:
        return False


def local_node_of(head: HeadAddress) -> bool:
    """Whether a raylet of the cluster at ``head`` runs on this machine (what ``ray.init`` needs).
    A raylet names its GCS by the head's routable address: a head given as localhost or by one of
    this machine's addresses is matched by port alone."""
    psutil = _psutil()
    wanted, own = _addresses_of(head.host), _own_addresses()
    local_head = any(_is_local(a, own) for a in wanted)
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if "raylet" not in (proc.info["name"] or ""):
                continue
            for arg in proc.info["cmdline"] or ():
                if not arg.startswith("--gcs-address="):
                    continue
                host, _, port = arg.removeprefix("--gcs-address=").rpartition(":")
                if port == str(head.port) and (host in wanted or (local_head and _is_local(host, own))):
                    return True
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


class RayStartProcess:
    """`ray start --block ARGS` in its own process group, its output in ``log``: stopping it stops
    that node's processes only, the cluster goes on."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        ray_cli = Path(sys.executable).parent / "ray"
        command = [str(ray_cli) if ray_cli.exists() else (shutil.which("ray") or "ray"), "start", "--block",
                   "--disable-usage-stats", *args]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)

    def started(self) -> bool:
        """Whether `ray start` says the node is up (it prints this once the node has registered)."""
        return "Ray runtime started" in self.log.read_text(errors="replace")

    def wait_started(self, seconds: float) -> bool:
        """Block until the node is up; False when `ray start` ended or ``seconds`` passed first."""
        deadline = time.monotonic() + seconds
        while not self.started():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def last_words(self) -> str:
        """Its last error line (else its last line): why it did not start."""
        lines = [line.strip() for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        return (errors or lines or [""])[-1][:300]

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the node's process group (Ray's own graceful stop), then SIGKILL to what is
        left of it after ``grace`` s (a raylet still starting ignores SIGTERM); 0: SIGKILL at once."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if wait <= 0:
                continue
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_alive(self.proc.pid):
                self.proc.poll()  # reaps the leader, so the group can be seen to end
                time.sleep(0.1)
        self.proc.wait(10.0)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


class JoinedNode:
    """This machine joined to the cluster at ``head`` as a node with no CPUs and no GPUs."""

    def __init__(self, head: HeadAddress, wait_seconds: float) -> None:
        self.head = head
        with tempfile.NamedTemporaryFile(prefix="lrsearch-ray-node-", suffix=".log", delete=False) as output:
            pass
        log.info("this machine is not a node of the Ray cluster at %s: joining it as one with no CPUs "
                 "(no trial runs here)", head)
        self.node = RayStartProcess([f"--address={head}", "--num-cpus=0", "--num-gpus=0",
                                     f"--object-store-memory={JOINED_OBJECT_STORE_BYTES}"], Path(output.name))
        try:
            up = self.node.wait_started(wait_seconds)
        except BaseException:  # interrupted (a SIGTERM while starting): nothing left behind
            self.stop()
            raise
        if not up:
            why = self.node.last_words() or "no output"
            self.stop()
            raise RayUnavailable(
                f"could not join the Ray cluster at {head} as a node of this machine ({why}). This machine "
                "and the cluster's nodes must reach each other on Ray's ports (docs/scaling.md); or run "
                "lrsearch serve on a node of the cluster.")

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.node.proc

    def stop(self) -> None:
        self.node.stop()
        self.node.log.unlink(missing_ok=True)


def reach_cluster(address: str, wait_seconds: float) -> JoinedNode | None:
    """Make ``ray.init(address=address)`` work from this machine: wait for the head, and join as a
    zero-CPU node when this machine is not already one, all within ``wait_seconds``. The joined
    node (to stop when done), or None. Raises RayUnavailable naming the fix."""
    head = parse_address(address)
    if head is None:
        return None
    deadline = time.monotonic() + wait_seconds
    wait_for_head(head, wait_seconds)
    if local_node_of(head):
        return None
    return JoinedNode(head, max(5.0, deadline - time.monotonic()))
