"""A pbt job survives SIGKILL of a real `lrsearch serve`: the population, the lineage and every
stored evaluation are kept, and the job finishes with the same members."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServiceProcess

pytestmark = pytest.mark.restarts  # `make test-restarts`

# Two members, the worse copying the better after each segment; rates that do not diverge.
SPEC = {"name": "pbt-restart", "workload": "mlp-digits", "strategy": "pbt", "epochs": 16, "max_concurrent": 2,
        "seed": 3, "space": {"lr": {"low": 1e-3, "high": 0.1}, "optimizer": ["sgd"]},
        "options": {"population": 2, "interval": 4}}
SEGMENTS = 4  # 16 epochs in segments of 4


def get(url: str, path: str) -> Any:
    return httpx.get(f"{url}/api/v1{path}", timeout=30).json()


def wait_until(pred: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_sigkill_mid_pbt_keeps_the_population_and_its_lineage(db_url: str, tmp_path: Path) -> None:
    # One data directory for both lives, as a service restarted on its machine has: the next
    # generation continues from the checkpoints the last one left there.
    env = {"LRSEARCH_LEASE_SECONDS": "3", "LRSEARCH_POLL_INTERVAL": "0.2", "LRSEARCH_DATA_DIR": str(tmp_path / "data")}
    log = tmp_path / "serve.log"
    service = ServiceProcess(db_url, env=env, log_path=log).start()
    try:
        job = httpx.post(f"{service.url}/api/v1/jobs", json=SPEC, timeout=30).json()
        # Killed after the first decisions, while the next generation trains.
        def exploited() -> bool:
            status = get(service.url, f"/jobs/{job['id']}")["status"]
            assert status in ("queued", "running"), f"the job ended ({status}) before the kill"
            return bool(get(service.url, f"/jobs/{job['id']}/population")["exploits"])

        wait_until(exploited, 180, "a first exploit")
        before = get(service.url, f"/jobs/{job['id']}/population")["exploits"]
        service.kill(signal.SIGKILL, group=True)
    finally:
        service.stop()

    service = ServiceProcess(db_url, env=env, log_path=log).start()
    try:
        url = service.url
        wait_until(lambda: get(url, f"/jobs/{job['id']}")["status"] not in ("queued", "running"), 240,
                   "the pbt job to finish after the restart")
        assert get(url, f"/jobs/{job['id']}")["status"] == "completed"
        after = get(url, f"/jobs/{job['id']}/population")
        assert after["exploits"][:len(before)] == before  # the lineage before the crash is kept
        assert [m["member"] for m in after["members"]] == [0, 1]
        trials = get(url, f"/jobs/{job['id']}/trials?limit=100")["items"]
        seen = [(t["number"], t["status"], t["config"]["pbt"], t["error"]) for t in trials]
        # The same members, every segment.
        assert all(len(m["segments"]) == SEGMENTS for m in after["members"]), (after["members"], seen)
        assert len(trials) == 2 * SEGMENTS and {t["status"] for t in trials} == {"completed"}, [
            (t["number"], t["error"]) for t in trials if t["status"] != "completed"]
        for t in trials:
            segment = t["config"]["pbt"]
            epochs = [m["epoch"] for m in get(url, f"/jobs/{job['id']}/trials/{t['number']}/metrics")["items"]]
            assert epochs == list(range(segment["start"], segment["stop"]))  # no evaluation stored twice
    finally:
        service.stop()
