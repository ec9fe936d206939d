"""The Ray layer: long-lived actors stream each epoch back, stop on request, report lost workers."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import ray

from lrsearch.workers.executor import RangeTestRun, TrialResources, TrialRun, WorkerLost
from lrsearch.workers.ray_executor import RayExecutor

CONFIG = {"lr": 0.05, "optimizer": "sgd", "schedule": "constant", "warmup_fraction": 0.0,
          "momentum": 0.9, "nesterov": False, "weight_decay": 0.0}


def test_streams_every_epoch_and_reuses_actors(ray_executor: RayExecutor) -> None:
    seen_at = []
    results = []
    for r in ray_executor.run_trial("t-stream", TrialRun("mlp-digits", CONFIG, epochs=5, seed=0)):
        seen_at.append(time.monotonic())
        results.append(r)
    assert [r["epoch"] for r in results] == list(range(5))
    assert all(r["lr"] == pytest.approx(0.05) and r["node"] for r in results)
    assert results[-1]["val_loss"] < results[0]["val_loss"]
    # The same seed and config train to the same numbers on a reused actor.
    again = list(ray_executor.run_trial("t-stream-2", TrialRun("mlp-digits", CONFIG, epochs=5, seed=0)))
    assert [r["val_loss"] for r in again] == [r["val_loss"] for r in results]
    idle = sum(len(a) for a in ray_executor._idle.values())
    assert idle >= 1


def test_stop_ends_a_trial_at_the_next_epoch(ray_executor: RayExecutor) -> None:
    got, trained = [], 0
    for r in ray_executor.run_trial("t-stop", TrialRun("mlp-digits", CONFIG, epochs=200, seed=0)):
        got.append(r)
        if len(got) == 2:
            # Quick epochs come in batches: the worker may be ahead of what was read.
            actor = ray_executor._running["t-stop"][0]
            trained = ray.get(actor.info.remote())["epochs_done"]["t-stop"]
            ray_executor.stop("t-stop")
    assert 2 <= trained <= len(got) <= trained + 2 < 200


def test_a_killed_worker_is_reported_as_lost(ray_executor: RayExecutor) -> None:
    gen = ray_executor.run_trial("t-kill", TrialRun("mlp-digits", CONFIG, epochs=500, seed=0,
                                 resources=TrialResources(cpu=1)))
    first = next(gen)
    assert first["epoch"] == 0
    actor = ray_executor._running["t-kill"][0]
    pid = ray.get(actor.info.remote())["pid"]
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLost):
        for _ in gen:
            pass
    # The dead actor is not handed out again: the next trial runs.
    assert len(list(ray_executor.run_trial("t-after", TrialRun("mlp-digits", CONFIG, epochs=1, seed=0)))) == 1


def test_trials_run_in_parallel_on_two_cpus(ray_executor: RayExecutor) -> None:
    spans: dict[str, tuple[float, float]] = {}

    def run(key: str) -> None:
        start = time.monotonic()
        list(ray_executor.run_trial(key, TrialRun("mlp-digits", CONFIG, epochs=30, seed=0)))
        spans[key] = (start, time.monotonic())

    threads = [threading.Thread(target=run, args=(k,)) for k in ("p0", "p1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = spans["p0"], spans["p1"]
    overlap = min(a1, b1) - max(a0, b0)
    assert overlap > 0.5 * min(a1 - a0, b1 - b0)


def test_idle_actors_of_another_shape_make_room(ray_executor: RayExecutor) -> None:
    """Idle actors keep their CPUs (and GPUs) between trials: a trial of another shape that does
    not fit beside them evicts them instead of waiting forever for a place Ray cannot give."""
    one, both = TrialResources(cpu=1.0), TrialResources(cpu=2.0)
    ran: dict[str, int] = {}

    def run(key: str, shape: TrialResources) -> None:
        ran[key] = len(list(ray_executor.run_trial(key, TrialRun("mlp-digits", CONFIG, epochs=2, seed=0, resources=shape))))

    pair = [threading.Thread(target=run, args=(f"t-one-{i}", one)) for i in range(2)]
    for t in pair:
        t.start()
    for t in pair:
        t.join(120)
    assert len(ray_executor._idle[one]) == 2  # both CPUs now held by idle actors
    wide = threading.Thread(target=run, args=("t-both", both), daemon=True)
    wide.start()
    wide.join(120)
    assert ran == {"t-one-0": 2, "t-one-1": 2, "t-both": 2}
    assert not ray_executor._idle[one] and ray_executor._live[one] == 0
    # And back: the wide actor, idle now, gives way to a one-CPU trial.
    back = threading.Thread(target=run, args=("t-one-again", one), daemon=True)
    back.start()
    back.join(120)
    assert ran["t-one-again"] == 2 and ray_executor._live[both] == 0


# --- GPU (skipped where there is none) -----------------------------------------------------------------

def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _cuda(), reason="no CUDA device")
def test_gpu_trials_share_the_device_and_train_on_cuda(ray_executor: RayExecutor) -> None:
    """Two trials asking for half a GPU each run at once on one device, on cuda, and learn as on the CPU."""
    assert ray.cluster_resources().get("GPU", 0) >= 1
    half = TrialResources(cpu=1.0, gpu=0.5)
    out: dict[str, list[dict]] = {}

    def run(key: str) -> None:
        out[key] = list(ray_executor.run_trial(key, TrialRun("mlp-digits", CONFIG, epochs=5, seed=0, resources=half)))

    threads = [threading.Thread(target=run, args=(f"t-gpu-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert sorted(out) == ["t-gpu-0", "t-gpu-1"]
    actors = ray_executor._idle[half]
    assert len(actors) == 2
    assert {ray.get(a.info.remote())["device"] for a in actors} == {"cuda"}
    on_cpu = list(ray_executor.run_trial("t-gpu-cpu", TrialRun("mlp-digits", CONFIG, epochs=5, seed=0)))
    for results in out.values():
        assert [r["epoch"] for r in results] == list(range(5))
        # Same seed, same data, same init: the device changes rounding, not what is learned.
        assert results[-1]["val_loss"] == pytest.approx(on_cpu[-1]["val_loss"], rel=0.05)
    # The range test runs on the GPU actor too.
    config = {**CONFIG, "lr": 1e-6, "range_test": {"lr_high": 10.0, "num_steps": 60, "repeat": 0}}
    test = ray_executor.run_range_test("t-gpu-rt", RangeTestRun("mlp-digits", config, seed=0, resources=half))
    assert test is not None and test["device"] == "cuda" and len(test["lrs"]) >= 10
