"""How the service reaches a Ray cluster it did not start (workers/ray_cluster.py), against a real
two-node `ray start` cluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from lrsearch.workers.ray_cluster import (
    HeadAddress,
    JoinedNode,
    RayUnavailable,
    local_node_of,
    parse_address,
    reach_cluster,
)
from tests.conftest import free_port, wait_for_nodes


@pytest.mark.parametrize(("address", "parsed"), [
    ("ray-head:6379", HeadAddress("ray-head", 6379)),
    ("10.0.0.5:7000", HeadAddress("10.0.0.5", 7000)),
    ("[::1]:6379", HeadAddress("::1", 6379)),
    ("auto", None),
])
def test_addresses_that_can_work(address: str, parsed: HeadAddress | None) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize(("address", "words"), [
    ("ray://ray-head:10001", "--ray-address ray-head:6379"),
    ("ray-head", "is not HOST:PORT"),
    ("ray-head:port", "is not HOST:PORT"),
])
def test_addresses_that_cannot_are_refused_with_what_to_do(address: str, words: str) -> None:
    with pytest.raises(RayUnavailable, match=words):
        parse_address(address)


def test_a_machine_running_a_node_of_the_cluster_is_recognised(two_node_cluster: tuple[str, dict[str, str]]) -> None:
    address, _ = two_node_cluster
    port = int(address.rsplit(":", 1)[1])
    # Its raylets name the head by this machine's routable address: any local name of it matches.
    own = socket.gethostbyname(socket.gethostname())
    for host in ("127.0.0.1", "localhost", own):
        assert local_node_of(HeadAddress(host, port)), host
    assert not local_node_of(HeadAddress("127.0.0.1", free_port()))
    assert reach_cluster(address, wait_seconds=5) is None  # nothing to join: it is a node already


def _alive_nodes(address: str, env: dict[str, str]) -> list[float]:
    """The CPUs of every alive node, asked by a client process of its own."""
    code = ("import json, ray\n"
            f"ray.init(address='{address}', log_to_driver=False)\n"
            "print(json.dumps([n['Resources'].get('CPU', 0.0) for n in ray.nodes() if n['Alive']]))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    return sorted(json.loads(out.stdout.strip().splitlines()[-1]))


def test_a_joined_node_has_no_cpus_and_leaves_nothing_when_stopped(
        two_node_cluster: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    address, env = two_node_cluster
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):  # the cluster's token, as a deployment has it
        monkeypatch.setenv(key, env[key])
    node = JoinedNode(parse_address(address), wait_seconds=60)  # type: ignore[arg-type]  # HOST:PORT parses
    try:
        wait_for_nodes(address, env, 3)
        assert _alive_nodes(address, env) == [0.0, 1.0, 1.0]  # trials can never be placed on it
    finally:
        node.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(node.proc.pid, 0)  # the node's processes, all of them, are gone


def test_a_node_that_cannot_join_says_so() -> None:
    with pytest.raises(RayUnavailable, match="could not join the Ray cluster at 127.0.0.1:.* as a node"):
        JoinedNode(HeadAddress("127.0.0.1", free_port()), wait_seconds=3)
