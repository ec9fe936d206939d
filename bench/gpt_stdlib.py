"""gpt-stdlib benchmarks, side by side in one run (``make bench-gpt`` or ``python -m bench.gpt_stdlib``).

overhead  tokens per second of one trial through lrsearch's trainer (TrialTrainer: its batches,
          optimizer, schedule, divergence checks, evaluations) against a plain PyTorch loop over the
          same model, the same batches in the same order and the same two evaluations (the untrained
          model and the end), both on one thread as a one-CPU trial runs. Runs alternate, so the
          machine's drift hits both alike; the medians and their ratio are reported.
search    the issue's check through a real ``lrsearch serve`` on 2 CPUs, for several training seeds:
          a bayesian job (12 trials of 300 steps, evaluated every 50, AdamW, constant or cosine,
          warmup 0-0.2) against a manual job at the rate a user would start from (AdamW at 1e-3,
          constant, no warmup), both trained from the same seed; the best val_loss of each and how
          much lower the search's is.

Results: a table on stdout and bench/results/gpt_stdlib.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CONFIG = {"lr": 1e-2, "optimizer": "adamw", "schedule": "constant", "warmup_fraction": 0.0}


# -- overhead -------------------------------------------------------------------------------------
def through_lrsearch(steps: int, seed: int) -> float:
    """Seconds of one trial of ``steps`` steps through TrialTrainer, evaluated at the start and the end."""
    from lrsearch.workers.registry import get_workload
    from lrsearch.workers.trainer import TrialTrainer

    t0 = time.perf_counter()
    trainer = TrialTrainer(get_workload("gpt-stdlib"), None, CONFIG, None, seed, steps=steps, eval_every=steps)
    trainer.run_epoch()
    return time.perf_counter() - t0


def plain_pytorch(steps: int, seed: int) -> float:
    """The same trial as a user writes it by hand: model, AdamW, the workload's batches, clipping."""
    import torch

    from lrsearch.workers.batches import pass_seed, seeded_torch
    from lrsearch.workers.registry import get_workload
    from lrsearch.workers.workloads.gpt_stdlib import ByteGPT, next_byte_loss

    workload = get_workload("gpt-stdlib")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = ByteGPT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=CONFIG["lr"], weight_decay=0.01, fused=True)

    @torch.no_grad()
    def evaluate() -> float:
        model.eval()
        losses = [float(next_byte_loss(model, b)) * len(b) for b in workload.val_batches(workload.eval_batch_size)]
        model.train()
        return sum(losses) / sum(len(b) for b in workload.val_batches(workload.eval_batch_size))

    evaluate()
    model.train()
    # The pass's order as lrsearch gives it: torch's RNG seeded for the pass, drawn only by the stream
    # (this model draws nothing while training).
    with seeded_torch(pass_seed(seed, 0)):
        batches = iter(workload.train_batches(workload.batch_size))
        for _ in range(steps):
            loss = next_byte_loss(model, next(batches))
            if not math.isfinite(loss.item()):
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), workload.grad_clip_norm)
            optimizer.step()
    evaluate()
    return time.perf_counter() - t0


def overhead(steps: int, repeats: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from lrsearch.workers.registry import get_workload

    workload = get_workload("gpt-stdlib")
    tokens = steps * workload.batch_size * 64
    through_lrsearch(10, 0), plain_pytorch(10, 0)  # warm: imports, the file cache, torch's first kernels
    runs: dict[str, list[float]] = {"lrsearch": [], "plain": []}
    for r in range(repeats):
        order = [("lrsearch", through_lrsearch), ("plain", plain_pytorch)]
        for name, fn in order if r % 2 == 0 else order[::-1]:
            runs[name].append(tokens / fn(steps, seed=r))
    med = {k: statistics.median(v) for k, v in runs.items()}
    return {"steps": steps, "tokens_per_trial": tokens, "repeats": repeats,
            "tokens_per_s": {k: [round(x) for x in v] for k, v in runs.items()},
            "median_tokens_per_s": {k: round(v) for k, v in med.items()},
            "lrsearch_slower_by": round(1 - med["lrsearch"] / med["plain"], 4)}


# -- search -----------------------------------------------------------------------------------------
def search(seeds: list[int], trials: int) -> dict[str, Any]:
    from bench.perf import Service, run_job

    db = f"sqlite:///{tempfile.mkdtemp(prefix='lrsearch-gpt-')}/bench.db"
    service = Service(db)
    length = {"steps": 300, "eval_every": 50}
    rows = []
    try:
        for seed in seeds:
            searched = {"name": f"gpt-bayesian-{seed}", "workload": "gpt-stdlib", "strategy": "bayesian",
                        "max_trials": trials, "max_concurrent": 2, "seed": seed, **length,
                        "space": {"lr": {"low": 1e-4, "high": 1e-1}, "optimizer": ["adamw"],
                                  "schedule": ["constant", "cosine"], "warmup_fraction": {"low": 0.0, "high": 0.2}}}
            default = {"name": f"gpt-default-{seed}", "workload": "gpt-stdlib", "strategy": "manual", "seed": seed,
                       **length, "configs": [{"lr": 1e-3, "optimizer": "adamw", "schedule": "constant",
                                              "warmup_fraction": 0.0}]}
            t_search, job = run_job(service.url, searched, poll=0.2)
            _, base = run_job(service.url, default, poll=0.2)
            assert job["status"] == base["status"] == "completed", (job, base)
            best, start = job["best"], base["best"]
            rows.append({"seed": seed, "search_seconds": round(t_search, 1), "searched_val_loss": best["val_loss"],
                         "searched_val_bpb": best["val_loss"] / math.log(2), "searched_config": best["config"],
                         "default_val_loss": start["val_loss"],
                         "improvement": round(1 - best["val_loss"] / start["val_loss"], 4)})
            print(f"seed {seed}: search {best['val_loss']:.4f} vs default {start['val_loss']:.4f} "
                  f"({rows[-1]['improvement']:.1%} lower) in {t_search:.0f} s", flush=True)
    finally:
        service.stop()
    gains = [r["improvement"] for r in rows]
    return {"trials": trials, **length, "seeds": rows, "improvement_median": statistics.median(gains),
            "improvement_min": min(gains), "improvement_max": max(gains),
            "seeds_at_least_5pct": sum(g >= 0.05 for g in gains)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="overhead,search", help="which parts, comma-separated")
    parser.add_argument("--steps", type=int, default=300, help="steps per overhead run")
    parser.add_argument("--repeats", type=int, default=5, help="overhead runs of each side")
    parser.add_argument("--seeds", type=int, default=5, help="training seeds of the search check")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--out", default=str(RESULTS / "gpt_stdlib.json"))
    args = parser.parse_args()
    parts = set(args.only.split(","))
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    results |= {"machine": {"cpus": os.cpu_count()}, "when": time.strftime("%Y-%m-%d %H:%M")}
    if "overhead" in parts:
        results["overhead"] = o = overhead(args.steps, args.repeats)
        print(f"overhead: lrsearch {o['median_tokens_per_s']['lrsearch']} tokens/s, plain PyTorch "
              f"{o['median_tokens_per_s']['plain']} tokens/s: lrsearch {o['lrsearch_slower_by']:.1%} slower", flush=True)
    if "search" in parts:
        results["search"] = s = search(list(range(args.seeds)), args.trials)
        print(f"search: {s['seeds_at_least_5pct']} of {len(s['seeds'])} seeds at least 5% below the default; "
              f"median {s['improvement_median']:.1%} (min {s['improvement_min']:.1%}, max {s['improvement_max']:.1%})")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
