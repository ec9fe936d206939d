"""Trials per hour on one GPU at 1, 2, 4 and 8 trials per device (``python -m bench.gpu_packing``).

A fractional GPU (``"resources": {"gpu": 0.25}``) makes Ray place that many trials on one device;
what that buys depends on how much of the GPU one small trial leaves idle. This measures it without
Ray (the device machines' image has torch but not Ray): ``k`` processes share the GPU, each training
its trials one after another through lrsearch's own trainer, exactly as ``k`` pooled actors with
``gpu: 1/k`` would. Workloads: ``gpt-stdlib`` (300 steps, bf16 autocast) and ``cnn-digits``
(10 epochs). Needs a CUDA device; prints why and exits otherwise.

Results: a table on stdout and bench/results/gpu_packing.json (with the device's name).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
LENGTHS: dict[str, dict[str, Any]] = {"gpt-stdlib": {"epochs": None, "steps": 300, "eval_every": 100},
                                      "cnn-digits": {"epochs": 10}}
CONFIG = {"lr": 3e-3, "optimizer": "adamw", "schedule": "cosine", "warmup_fraction": 0.1}


def _worker(workload: str, trials: int, start: Any, out: Any) -> None:
    import torch

    from lrsearch.workers.registry import get_workload
    from lrsearch.workers.trainer import TrialTrainer

    torch.set_num_threads(1)
    wl = get_workload(workload)
    data = None if wl.streams else wl.load_data(0)
    length = dict(LENGTHS[workload])
    epochs = length.pop("epochs")
    TrialTrainer(wl, data, CONFIG, epochs, 0, device="cuda", **length).run_epoch()  # warm: CUDA context, kernels
    start.wait()
    t0 = time.perf_counter()
    for seed in range(trials):
        trainer = TrialTrainer(wl, data, CONFIG, epochs, seed, device="cuda", **length)
        while not trainer.finished:
            trainer.run_epoch()
    torch.cuda.synchronize()
    out.put(time.perf_counter() - t0)


def packed(workload: str, per_device: int, trials: int) -> float:
    """Trials per hour with ``per_device`` processes sharing the GPU, ``trials`` each."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(per_device), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(workload, trials, start, out)) for _ in range(per_device)]
    for p in procs:
        p.start()
    walls = [out.get(timeout=3600) for _ in procs]
    for p in procs:
        p.join()
    return per_device * trials / max(walls) * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packing", default="1,2,4,8")
    parser.add_argument("--trials", type=int, default=4, help="trials per process")
    parser.add_argument("--workloads", default="gpt-stdlib,cnn-digits")
    parser.add_argument("--out", default=str(RESULTS / "gpu_packing.json"))
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures GPU packing and needs one")
    results: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "when": time.strftime("%Y-%m-%d %H:%M"),
                               "trials_per_process": args.trials, "trials_per_hour": {}}
    for workload in args.workloads.split(","):
        rates = {k: round(packed(workload, k, args.trials)) for k in map(int, args.packing.split(","))}
        results["trials_per_hour"][workload] = rates
        print(f"{workload}: " + ", ".join(f"{k}/device {r}/h ({r / rates[1]:.2f}x)" for k, r in rates.items()),
              flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
