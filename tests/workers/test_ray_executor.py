"""The Ray layer: long-lived actors stream each epoch back, stop on request, report lost workers."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray

from workers.ray_executor import RayExecutor, TrialResources, WorkerLost

CONFIG = {"lr": 0.05, "optimizer": "sgd", "schedule": "constant", "warmup_fraction": 0.0,
          "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}


def test_streams_every_epoch_and_reuses_actors(ray_executor: RayExecutor) -> None:
    seen_at = []
    results = []
    for r in ray_executor.run_trial("t-stream", "mlp-digits", CONFIG, epochs=5, seed=0):
        seen_at.append(time.monotonic())
        results.append(r)
    assert [r["epoch"] for r in results] == list(range(5))
    assert all(r["lr"] == pytest.approx(0.05) and r["node"] for r in results)
    assert results[-1]["val_loss"] < results[0]["val_loss"]
    # The same seed and config train to the same numbers on a reused actor.
    again = list(ray_executor.run_trial("t-stream-2", "mlp-digits", CONFIG, epochs=5, seed=0))
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in results]
    idle = sum(len(a) for a in ray_executor._idle.values())
    assert idle >= 1


def test_stop_ends_a_trial_at_the_next_epoch(ray_executor: RayExecutor) -> None:
    got = []
    for r in ray_executor.run_trial("t-stop", "mlp-digits", CONFIG, epochs=200, seed=0):
        got.append(r)
        if len(got) == 2:
            ray_executor.stop("t-stop")
    assert 2 <= len(got) <= 4


def test_a_killed_worker_is_reported_as_lost(ray_executor: RayExecutor) -> None:
    gen = ray_executor.run_trial("t-kill", "mlp-digits", CONFIG, epochs=500, seed=0,
                                 resources=TrialResources(cpu=1))
    first = next(gen)
    assert first["epoch"] == 0
    actor = ray_executor._running["t-kill"]
    pid = ray.get(actor.info.remote())["pid"]
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLost):
        for _ in gen:
            pass
    # The dead actor is not handed out again: the next trial runs.
    assert len(list(ray_executor.run_trial("t-after", "mlp-digits", CONFIG, epochs=1, seed=0))) == 1


def test_trials_run_in_parallel_on_two_cpus(ray_executor: RayExecutor) -> None:
    spans: dict[str, tuple[float, float]] = {}

    def run(key: str) -> None:
        start = time.monotonic()
        list(ray_executor.run_trial(key, "mlp-digits", CONFIG, epochs=30, seed=0))
        spans[key] = (start, time.monotonic())

    threads = [threading.Thread(target=run, args=(k,)) for k in ("p0", "p1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = spans["p0"], spans["p1"]
    overlap = min(a1, b1) - max(a0, b0)
    assert overlap > 0.5 * min(a1 - a0, b1 - b0)
