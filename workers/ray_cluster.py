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

log = logging.getLogger(__name__)

# How often a wait says it is still waiting.
WAIT_LOG_SECONDS = 5.0
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
    start = time.monotonic()
    say_at = start
    while True:
        try:
            socket.create_connection((head.host, head.port), timeout=2.0).close()
            return
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
        now = time.monotonic()
        if now - start >= wait_seconds:
            raise RayUnavailable(
                f"no Ray cluster answers at {head} ({reason}; waited {wait_seconds:g} s). Start its head there "
                f"(`ray start --head --port={head.port}`), or point --ray-address (RAY_ADDRESS) at a running "
                "head's GCS address; leave it out to run trials on a Ray the service starts itself.")
        if now >= say_at:
            log.info("waiting for the Ray cluster at %s (%s)", head, reason)
            say_at = now + WAIT_LOG_SECONDS
        time.sleep(0.5)


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


def _this_machine(addresses: set[str]) -> bool:
    import ipaddress

    psutil = _psutil()
    own = {a.address.split("%")[0] for nic in psutil.net_if_addrs().values() for a in nic}
    for address in addresses:
        try:
            if ipaddress.ip_address(address.split("%")[0]).is_loopback:
                return True
        except ValueError:
            continue
    return bool(addresses & own)


def local_node_of(head: HeadAddress) -> bool:
    """Whether a raylet of the cluster at ``head`` runs on this machine (what ``ray.init`` needs).
    A raylet names its GCS by the head's routable address: a head given as localhost or by one of
    this machine's addresses is matched by port alone."""
    psutil = _psutil()
    wanted = _addresses_of(head.host)
    local_head = _this_machine(wanted)
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if "raylet" not in (proc.info["name"] or ""):
                continue
            for arg in proc.info["cmdline"] or ():
                if not arg.startswith("--gcs-address="):
                    continue
                host, _, port = arg.removeprefix("--gcs-address=").rpartition(":")
                if port == str(head.port) and (host in wanted or (local_head and _this_machine({host}))):
                    return True
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return False


class JoinedNode:
    """`ray start --block --num-cpus=0 --num-gpus=0` joined to the cluster, in its own process group:
    stopping it stops this node's processes only (the cluster goes on)."""

    def __init__(self, head: HeadAddress, wait_seconds: float) -> None:
        self.head = head
        self._log = tempfile.NamedTemporaryFile(prefix="lrsearch-ray-node-", suffix=".log", delete=False)  # noqa: SIM115 - kept open for the node's life
        ray_cli = Path(sys.executable).parent / "ray"
        command = [str(ray_cli) if ray_cli.exists() else (shutil.which("ray") or "ray"), "start", "--block",
                   f"--address={head}", "--num-cpus=0", "--num-gpus=0", "--disable-usage-stats",
                   f"--object-store-memory={JOINED_OBJECT_STORE_BYTES}"]
        log.info("this machine is not a node of the Ray cluster at %s: joining it as one with no CPUs "
                 "(no trial runs here)", head)
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_up(wait_seconds)
        except BaseException:
            self.stop()
            raise

    def _wait_up(self, wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        while not self._started():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RayUnavailable(
                    f"could not join the Ray cluster at {self.head} as a node of this machine "
                    f"({self._tail() or 'no output'}). This machine and the cluster's nodes must reach each "
                    "other on Ray's ports (docs/scaling.md); or run lrsearch serve on a node of the cluster.")
            time.sleep(0.2)

    def _started(self) -> bool:
        """Whether `ray start` says the node is up (it prints this once the node has registered)."""
        return "Ray runtime started" in Path(self._log.name).read_text(errors="replace")

    def _tail(self) -> str:
        lines = [line.strip() for line in Path(self._log.name).read_text(errors="replace").splitlines()
                 if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        return (errors or lines or [""])[-1][:300]

    def stop(self) -> None:
        """SIGTERM to the node's process group (Ray's own graceful stop), then SIGKILL to what is
        left of it after a while."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 5.0  # a raylet still starting ignores SIGTERM
            while time.monotonic() < deadline and _group_alive(self.proc.pid):
                self.proc.poll()  # reaps the leader, so the group can be seen to end
                time.sleep(0.1)
        self.proc.wait(10.0)
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def reach_cluster(address: str, wait_seconds: float) -> JoinedNode | None:
    """Make ``ray.init(address=address)`` work from this machine: wait for the head, and join as a
    zero-CPU node when this machine is not already one. The joined node (to stop when done), or None.
    Raises RayUnavailable naming the fix."""
    head = parse_address(address)
    if head is None:
        return None
    wait_for_head(head, wait_seconds)
    if local_node_of(head):
        return None
    return JoinedNode(head, wait_seconds)
