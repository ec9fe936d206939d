"""How the service should reach a Ray cluster it does not run on: as a node of it (a zero-CPU
`ray start` on its own machine, what `lrsearch serve --ray-address HOST:PORT` does), or through
Ray Client (`ray://HOST:10001`). Both against the same real `ray start` cluster, in one run:

- an actor round trip (a call and its result), median over many;
- one trial's Ray traffic as lrsearch makes it: one call whose 5 results stream back. Ray Client
  cannot stream an actor's results at all; what it would take instead (a call per result) is
  measured for it;
- a whole job through `lrsearch serve` joined to the cluster (P4's shape: synthetic trials,
  5 epochs, 2 at a time): the service's overhead per trial against the bare training loop.

On one machine the driver uses the head's raylet; in a deployment the API's own zero-CPU node
plays that part, with the same local-raylet path (plus the network to the workers).
    python -m bench.ray_join [--trials 300] [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.perf import REPO, Service, _in_process, free_port, run_job
from lrsearch.workers.ray_cluster import RayStartProcess

RESULTS = REPO / "bench" / "results" / "ray_join.json"
ROUNDS = 5  # results per trial (epochs)

_PROBE = r'''
import json, statistics, sys, time
import ray

address, calls, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ray.init(address=address, log_to_driver=False)

@ray.remote(num_cpus=1)
class Actor:
    def ping(self, x):
        return x
    def results(self, n):
        for i in range(n):
            yield {"epoch": i, "val_loss": 1.0 / (i + 1)}
    def result(self, i):
        return {"epoch": i, "val_loss": 1.0 / (i + 1)}

actor = Actor.remote()
ray.get(actor.ping.remote(0))
out = {}
times = []
for i in range(calls):
    t = time.perf_counter(); ray.get(actor.ping.remote(i)); times.append(time.perf_counter() - t)
out["round_trip_ms"] = statistics.median(times) * 1000
times = []
try:
    for _ in range(calls // 2):
        t = time.perf_counter()
        for ref in actor.results.options(num_returns="streaming").remote(rounds):
            ray.get(ref)
        times.append(time.perf_counter() - t)
    out["trial_streamed_ms"] = statistics.median(times) * 1000
except Exception as exc:
    out["trial_streamed_ms"] = None
    out["streaming_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
times = []
for _ in range(calls // 2):
    t = time.perf_counter()
    for i in range(rounds):
        ray.get(actor.result.remote(i))
    times.append(time.perf_counter() - t)
out["trial_call_per_result_ms"] = statistics.median(times) * 1000
print("RESULT " + json.dumps(out))
'''


class Cluster:
    """`ray start --head` with 2 CPUs and its Ray Client server, with token auth on, as deployed."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lrsearch-bench-ray-"))
        token = self.dir / "token"
        token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.port, self.client_port = free_port(), free_port()
        self.head = RayStartProcess(
            ["--head", f"--port={self.port}", f"--ray-client-server-port={self.client_port}", "--num-cpus=2",
             "--include-dashboard=false", "--node-ip-address=127.0.0.1", f"--temp-dir={self.dir / 'ray'}"],
            self.dir / "head.log", self.env)
        if not self.head.wait_started(90):
            raise RuntimeError(f"ray start failed: {self.head.last_words()}")

    def stop(self) -> None:
        self.head.stop()


def probe(cluster: Cluster, address: str, calls: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _PROBE, address, str(calls), str(ROUNDS)], env=cluster.env,
                         capture_output=True, text=True, timeout=600)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"probe over {address} failed: {out.stderr[-2000:]}")
    return dict(json.loads(line[len("RESULT "):]))


def job_overhead(cluster: Cluster, trials: int) -> dict[str, Any]:
    db = Path(tempfile.mkdtemp()) / "join.db"
    service = Service(f"sqlite:///{db}", env={**cluster.env, "RAY_ADDRESS": f"127.0.0.1:{cluster.port}"})
    try:
        run_job(service.url, {"workload": "synthetic", "strategy": "manual", "epochs": 1,
                              "configs": [{"lr": 0.01}, {"lr": 0.02}]})
        spec = {"workload": "synthetic", "strategy": "random", "max_trials": trials, "max_concurrent": 2,
                "epochs": ROUNDS, "seed": 0, "space": {"lr": {"low": 1e-4, "high": 0.3}, "optimizer": ["sgd", "adam"]}}
        seconds, job = run_job(service.url, spec)
    finally:
        service.stop()
    bare = _in_process(f"bare-synthetic:{ROUNDS}")
    return {"trials": trials, "status": job["status"], "seconds": seconds,
            "overhead_ms_per_trial": (seconds * 2 / trials - bare) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    cluster = Cluster()
    try:
        results = {
            "node": probe(cluster, f"127.0.0.1:{cluster.port}", args.calls),
            "client": probe(cluster, f"ray://127.0.0.1:{cluster.client_port}", args.calls),
            "job_as_node": job_overhead(cluster, args.trials),
        }
    finally:
        cluster.stop()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    node, client = results["node"], results["client"]
    print(f"actor round trip: node {node['round_trip_ms']:.2f} ms, Ray Client {client['round_trip_ms']:.2f} ms "
          f"({client['round_trip_ms'] / node['round_trip_ms']:.1f}x)")
    print(f"a {ROUNDS}-result trial: node, streamed {node['trial_streamed_ms']:.2f} ms; Ray Client: "
          f"{client.get('streaming_error') or client['trial_streamed_ms']}; a call per result "
          f"{client['trial_call_per_result_ms']:.2f} ms (node {node['trial_call_per_result_ms']:.2f} ms)")
    job = results["job_as_node"]
    print(f"lrsearch serve joined to the cluster: {job['trials']} trials {job['status']} in {job['seconds']:.1f} s, "
          f"{job['overhead_ms_per_trial']:.1f} ms overhead per trial")
    print(f"wrote {RESULTS.relative_to(REPO)}; median of {args.calls} calls each")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
