"""Data-parallel start-up cost: lrsearch's pooled actors against Ray Train, in one run
(``make bench-dp`` or ``python -m bench.data_parallel``).

The same 2-worker data-parallel training (1 epoch of mlp-digits at a global batch of 64, gloo on
the CPU, DistributedDataParallel) on a local Ray with 2 CPUs, timed from the call until the
training's result is back:

- lrsearch, cold: the executor's first 2-worker trial (two new actors: torch imported, data loaded);
- lrsearch, warm: the next trials (pooled actors, a process group joined and left per trial);
- Ray Train: ``TorchTrainer(ScalingConfig(num_workers=2))`` as its documentation writes it
  (``prepare_model``; each ``fit()`` starts its worker group anew);
- one worker: the same epoch on one pooled actor, for the training's own cost.

Ray's own start-up is not timed. Results: a table on stdout and bench/results/data_parallel.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CONFIG = {"lr": 0.05, "optimizer": "sgd", "schedule": "constant", "warmup_fraction": 0.0}


def _ray_train_loop(config: dict[str, Any]) -> None:
    import torch
    from ray import train
    from ray.train.torch import prepare_model

    from lrsearch.workers.registry import get_workload
    from lrsearch.workers.trainer import share_of

    workload = get_workload("mlp-digits")
    data = workload.load_data(0)
    torch.manual_seed(0)
    model = prepare_model(workload.build_model(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=CONFIG["lr"], momentum=0.9)
    rank, world = train.get_context().get_world_rank(), train.get_context().get_world_size()
    order = torch.randperm(len(data.train_x), generator=torch.Generator().manual_seed(0))
    loss_fn = torch.nn.CrossEntropyLoss()
    for start in range(0, len(order), 64):
        x, y = share_of((data.train_x[order[start:start + 64]], data.train_y[order[start:start + 64]]), rank, world)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        val_loss = float(loss_fn(model(data.val_x), data.val_y))
    train.report({"val_loss": val_loss})


def ray_train_once(storage: str) -> tuple[float, float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t0 = time.perf_counter()
    result = TorchTrainer(_ray_train_loop, scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
                          run_config=RunConfig(storage_path=storage, name=f"dp-{time.time_ns()}")).fit()
    # Ray Train keeps reported metrics in its result only beside a checkpoint: none is written here.
    return time.perf_counter() - t0, float((result.metrics or {}).get("val_loss", float("nan")))


def lrsearch_once(executor: Any, key: str, workers: int) -> tuple[float, float]:
    from lrsearch.workers.executor import TrialRun

    t0 = time.perf_counter()
    run = TrialRun("mlp-digits", CONFIG, seed=0, epochs=1, batch_size=64, workers=workers)
    rows = list(executor.run_trial(key, run))
    return time.perf_counter() - t0, float(rows[-1]["val_loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "data_parallel.json"))
    args = parser.parse_args()

    from lrsearch.workers.ray_executor import RayExecutor

    executor = RayExecutor(num_cpus=2)
    executor.start()
    try:
        cold = lrsearch_once(executor, "cold", 2)
        warm = [lrsearch_once(executor, f"warm-{i}", 2) for i in range(args.repeats)]
        one = [lrsearch_once(executor, f"one-{i}", 1) for i in range(args.repeats)]
        executor.shutdown()  # the pooled actors hold both CPUs: Ray Train needs them
        executor = RayExecutor(num_cpus=2)
        executor.start()
        storage = tempfile.mkdtemp(prefix="lrsearch-raytrain-")
        ray_train = [ray_train_once(storage) for _ in range(args.repeats)]
    finally:
        executor.shutdown()
    median = lambda runs: round(statistics.median(t for t, _ in runs), 3)  # noqa: E731
    results = {
        "machine": {"cpus": os.cpu_count()}, "when": time.strftime("%Y-%m-%d %H:%M"), "repeats": args.repeats,
        "seconds": {"lrsearch_cold": round(cold[0], 3), "lrsearch_warm": median(warm), "ray_train": median(ray_train),
                    "one_worker": median(one)},
        "runs": {"lrsearch_warm": [round(t, 3) for t, _ in warm], "ray_train": [round(t, 3) for t, _ in ray_train],
                 "one_worker": [round(t, 3) for t, _ in one]},
        "val_loss": {"lrsearch": warm[-1][1], "ray_train": ray_train[-1][1], "one_worker": one[-1][1]},
    }
    s = results["seconds"]
    print(f"2-worker trial of 1 epoch: lrsearch cold {s['lrsearch_cold']} s, warm {s['lrsearch_warm']} s; "
          f"Ray Train {s['ray_train']} s; one worker {s['one_worker']} s "
          f"(Ray Train / lrsearch warm: {s['ray_train'] / s['lrsearch_warm']:.1f}x)")
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
