"""Range-test suggestions: lrsearch's against torch-lr-finder's, both judged by a 10-epoch training.

What it measures. For every built-in workload (``mlp-digits``, ``cnn-digits``, ``logreg-breast-cancer``,
``mlp-wine``, ``synthetic``) and each optimizer (``sgd``, ``adam``, ``rmsprop``, ``adagrad``, catalog
defaults: sgd with momentum 0.9), how good a learning rate each range-test tool suggests: the
validation loss of a 10-epoch training at the suggested rate (constant schedule, no warmup,
training seed 0, ``workload.load_data(seed=0)``), against the best of a grid.

How, per workload x optimizer:

1. Grid: ``--grid-points`` (16) log-spaced rates from 1e-5 to 10 (lrsearch's own grid parser), each
   trained 10 epochs with ``workers.trainer.TrialTrainer``. A training's val_loss is its lowest
   over the epochs (as lrsearch ranks trials; non-finite is worse than any); the grid best is the
   lowest of the grid's.
2. lrsearch: ``workers.range_test.run_range_test`` from 1e-7 to 10 in 100 steps, seeds 0, 1, 2 (the
   ``range_test`` strategy's default three repeats), summed up by ``search.range_test.summarize``
   (each seed's ``combined`` rule on its batch losses, geometric mean over seeds); one training at
   that rate.
3. torch-lr-finder 0.2.2: the same model (``workload.build_model(seed)`` under
   ``torch.manual_seed(seed)``, as TrialTrainer and run_range_test build it), the same optimizer
   (``workers.optimizers.build_optimizer`` at lr 1e-7), the workload's loss, and a shuffling
   ``DataLoader`` over the training tensors at the workload's batch size (its generator seeded with
   ``seed + workers.batches.SHUFFLE_SEED_OFFSET``). ``LRFinder(...).range_test(loader, end_lr=10,
   num_iter=100, step_mode="exp")`` with its defaults otherwise (``smooth_f=0.05``, ``diverge_th=5``),
   then its own suggestion, ``plot(skip_start=10, skip_end=5, log_lr=True, suggest_lr=True)`` on a
   matplotlib Agg axes: the steepest ``np.gradient`` of the smoothed loss (per index, not per log
   rate). It raises when the test recorded fewer than 17 points (it stopped early on divergence):
   that seed has no suggestion. Seeds 0, 1, 2 as for lrsearch; the rate trained is the geometric
   mean of the seeds that gave one. None of the three: "no suggestion", counted as a loss.

Which is better: the lower val_loss, a tie when the two are within 0.5% of each other (the
larger at most 1.005x the smaller); a side with no finite val_loss loses to one with one. Per
workload the summary counts the optimizers where lrsearch is at least as good (better or tied)
and, for every optimizer, whether lrsearch came within 5% of the grid best (val_loss at most
1.05x; the check that matters is ``mlp-digits``, where ``summarize``'s rule was tuned). Both tools
may land off the grid, so a ratio below 1 means a rate better than every grid point. Where the
grid best is exactly 0 (``mlp-wine``: 36 validation samples, and at large rates the cross-entropy
of confidently right logits underflows to 0) the ratio and the 5% check are undefined (n/a), and
the 0.5% tie rule compares losses of 1e-4..1e-2, i.e. noise.

Everything runs in a pool of 2 processes (``--workers``), each with ``torch.set_num_threads(1)``.
Results, the table and the versions of torch and torch_lr_finder go to
``bench/results/lr_finder.json``.

Run: ``make bench-finder``. It creates ``.venv-bench`` (torch-lr-finder and matplotlib are the
extra ``finder-bench`` and live only there; torch keeps the project's pin) and runs
``.venv-bench/bin/python -m bench.lr_finder``; flags go through ``BENCH_ARGS``, e.g.
``make bench-finder BENCH_ARGS=--quick`` (``mlp-digits`` and ``synthetic``, sgd and adam, results in
the temp dir). The full run takes several minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

OPTIMIZERS = ["sgd", "adam", "rmsprop", "adagrad"]
QUICK_WORKLOADS = ["mlp-digits", "synthetic"]
QUICK_OPTIMIZERS = ["sgd", "adam"]
GRID_LOW, GRID_HIGH = 1e-5, 10.0
GRID_POINTS = 16
RT_LOW, RT_HIGH, RT_STEPS = 1e-7, 10.0, 100  # both range tests
REPEATS = 3  # seeds 0..REPEATS-1 of both range tests, as the range_test strategy's default
EPOCHS = 10
TRAIN_SEED = 0
DATA_SEED = 0
TIE = 0.005  # "tie": within 0.5%
NEAR_GRID = 0.05  # "within 5% of the grid best"
FINDER_PLOT = {"skip_start": 10, "skip_end": 5, "log_lr": True, "show_lr": None, "suggest_lr": True}
LRSEARCH, FINDER = "lrsearch", "torch-lr-finder"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "lr_finder.json"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- in the worker processes -------------------------------------------------------------------------
_CACHE: dict[str, Any] = {}


def _init_worker() -> None:
    import warnings

    import torch

    torch.set_num_threads(1)
    # torch-lr-finder calls its scheduler's get_lr() outside step(), which torch warns about per step.
    warnings.filterwarnings("ignore", category=UserWarning)


def _workload_and_data(name: str) -> tuple[Any, Any]:
    if name not in _CACHE:
        from lrsearch.workers.registry import get_workload

        wl = get_workload(name)
        _CACHE[name] = (wl, wl.load_data(seed=DATA_SEED))
    return _CACHE[name]


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _train_job(args: tuple[str, str, float, int, int]) -> dict[str, Any]:
    """One 10-epoch training at a constant rate: every epoch's val_loss (None where not finite)."""
    from lrsearch.workers.trainer import TrialTrainer

    name, optimizer, lr, epochs, seed = args
    wl, data = _workload_and_data(name)
    started = time.monotonic()
    config = {"lr": lr, "optimizer": optimizer, "schedule": "constant", "warmup_fraction": 0.0}
    trainer = TrialTrainer(wl, data, config, epochs=epochs, seed=seed)
    curve: list[float | None] = []
    reason = None
    while not trainer.finished:
        result = trainer.run_epoch()
        curve.append(_finite(result.val_loss))
        reason = result.reason or reason
    finite = [v for v in curve if v is not None]
    return {"lr": lr, "val_loss": min(finite) if finite else None, "curve": curve,
            "diverged": trainer.diverged, "reason": reason, "seconds": time.monotonic() - started}


def _lrsearch_job(args: tuple[str, str, int]) -> dict[str, Any]:
    """lrsearch's range test of one seed: the curve summarize needs, and how it ended."""
    from lrsearch.workers.range_test import run_range_test

    name, optimizer, seed = args
    wl, data = _workload_and_data(name)
    started = time.monotonic()
    r = run_range_test(wl, data, {"optimizer": optimizer}, lr_low=RT_LOW, lr_high=RT_HIGH,
                       num_steps=RT_STEPS, seed=seed)
    return {"seed": seed, "lrs": r.lrs, "raw_losses": r.raw_losses, "steps": r.steps,
            "stopped_early": r.stopped_early, "reason": r.reason, "seconds": time.monotonic() - started}


def _finder_job(args: tuple[str, str, int]) -> dict[str, Any]:
    """torch-lr-finder's range test and suggestion for one seed (None when it cannot suggest)."""
    import contextlib
    import io

    import matplotlib

    matplotlib.use("Agg")
    import torch
    from matplotlib.figure import Figure
    from torch.utils.data import DataLoader, TensorDataset
    from torch_lr_finder import LRFinder

    from lrsearch.search.catalog import complete_config
    from lrsearch.workers.batches import SHUFFLE_SEED_OFFSET
    from lrsearch.workers.optimizers import build_optimizer

    name, optimizer_name, seed = args
    wl, data = _workload_and_data(name)
    started = time.monotonic()
    outer = torch.get_rng_state()
    torch.manual_seed(seed)  # as TrialTrainer and run_range_test build the model (training draws follow)
    printed = io.StringIO()
    suggestion, error = None, None
    history: dict[str, list[float]] = {"lr": [], "loss": []}
    try:
        model = wl.build_model(seed)
        config = complete_config({"optimizer": optimizer_name, "lr": RT_LOW, "schedule": "constant"}, 1)
        optimizer = build_optimizer(model.parameters(), config)
        loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=wl.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed + SHUFFLE_SEED_OFFSET))
        finder = LRFinder(model, optimizer, wl.loss_fn())
        history = finder.history
        with contextlib.redirect_stdout(printed):
            finder.range_test(loader, end_lr=RT_HIGH, num_iter=RT_STEPS, step_mode="exp")
            history = finder.history
            # 0.2.2 returns (ax, lr) with suggest_lr=True, and raises RuntimeError ("Need at least 17
            # iterations to suggest a learning rate. Got n") when the test stopped that early.
            _ax, suggestion = finder.plot(ax=Figure().add_subplot(), **FINDER_PLOT)
    except Exception as exc:  # recorded as "no suggestion" for this seed, never the end of the run
        error = f"{type(exc).__name__}: {exc}"
    finally:
        torch.set_rng_state(outer)
    lrs, losses = history["lr"], history["loss"]
    finite = [(v, lr) for lr, v in zip(lrs, losses) if math.isfinite(v)]
    return {
        "seed": seed,
        "suggestion": _finite(suggestion),
        "error": error,
        "points": len(lrs),
        "stopped_early": "Stopping early" in printed.getvalue(),
        "nonfinite_losses": len(losses) - len(finite),
        "last_lr": float(lrs[-1]) if lrs else None,
        "lr_at_min_loss": float(min(finite)[1]) if finite else None,
        "seconds": time.monotonic() - started,
    }


# -- in the main process (no torch here) -------------------------------------------------------------
def grid_lrs(points: int) -> list[float]:
    """The grid a ``grid`` job over lr 1e-5..10 with ``num: points`` would run."""
    from lrsearch.search.space import parse_space

    return parse_space({"lr": {"low": GRID_LOW, "high": GRID_HIGH, "num": points}}, grid=True).dims["lr"].grid_points()


def _rank(v: float | None) -> float:
    return math.inf if v is None else v


def compare(a: float | None, b: float | None) -> str:
    """LRSEARCH, FINDER or "tie" for val_losses a (lrsearch) and b (torch-lr-finder)."""
    if a is None and b is None:
        return "tie"
    if b is None:
        return LRSEARCH
    if a is None:
        return FINDER
    lo, hi = min(a, b), max(a, b)
    if hi <= lo * (1 + TIE):
        return "tie"
    return LRSEARCH if a < b else FINDER


def _ratio(v: float | None, best: float | None) -> float | None:
    return None if v is None or best is None or best <= 0 else v / best


def suggestions(rts: list[dict[str, Any]], finders: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Both tools' suggestions for one workload x optimizer from their range tests (``lr`` None:
    torch-lr-finder suggested nothing in any seed)."""
    from lrsearch.search.range_test import spread, summarize

    summary = summarize([(RT_LOW, r["lrs"], r["raw_losses"]) for r in rts])
    assert summary is not None
    got = [f["suggestion"] for f in finders if f["suggestion"] is not None]
    finder_spread = spread(got) if got else None
    return {
        LRSEARCH: {
            "lr": summary["lr"],
            "per_seed": summary["per_seed"],
            "spread": summary["spread"],
            "rules": summary["rules"],
            "range_tests": [{k: r[k] for k in ("seed", "steps", "stopped_early", "reason")} for r in rts],
        },
        FINDER: {
            "lr": finder_spread["geometric_mean"] if finder_spread else None,
            "per_seed": [f["suggestion"] for f in finders],
            "spread": finder_spread,
            "range_tests": [{k: f[k] for k in ("seed", "points", "stopped_early", "nonfinite_losses", "last_lr",
                                               "lr_at_min_loss", "error")} for f in finders],
        },
    }


def grid_summary(grid: list[dict[str, Any]]) -> dict[str, Any]:
    best = min(grid, key=lambda g: _rank(g["val_loss"]))
    return {
        "lrs": [g["lr"] for g in grid],
        "val_losses": [g["val_loss"] for g in grid],
        "diverged": sum(g["diverged"] for g in grid),
        "best_lr": best["lr"] if best["val_loss"] is not None else None,
        "best_val_loss": best["val_loss"],
    }


def finish_cell(cell: dict[str, Any], trained: dict[str, dict[str, Any] | None]) -> None:
    """Add the trainings at the suggestions, the ratios to the grid best and the verdict."""
    best = cell["grid"]["best_val_loss"]
    for side in (LRSEARCH, FINDER):
        t = trained.get(side)
        s = cell[side]
        s["val_loss"] = t["val_loss"] if t else None
        s["curve"] = t["curve"] if t else None
        s["diverged"] = t["diverged"] if t else None
        s["ratio_to_grid"] = _ratio(s["val_loss"], best)
        # None (undefined) when the grid best is not positive: a cross-entropy can underflow to exactly 0.
        s["within_5pct"] = (None if best is None or best <= 0
                            else s["ratio_to_grid"] is not None and s["ratio_to_grid"] <= 1 + NEAR_GRID)
        s["outside_grid_range"] = s["lr"] is not None and not (
            GRID_LOW * (1 - 1e-9) <= s["lr"] <= GRID_HIGH * (1 + 1e-9))
    cell["better"] = compare(cell[LRSEARCH]["val_loss"], cell[FINDER]["val_loss"])


def summarize_workloads(cells: list[dict[str, Any]], workloads: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for w in workloads:
        cs = [c for c in cells if c["workload"] == w]
        if not cs:
            continue
        out[w] = {
            "optimizers": len(cs),
            "lrsearch_at_least_as_good": sum(c["better"] in (LRSEARCH, "tie") for c in cs),
            "lrsearch_better": sum(c["better"] == LRSEARCH for c in cs),
            "ties": sum(c["better"] == "tie" for c in cs),
            "finder_better": sum(c["better"] == FINDER for c in cs),
            "finder_no_suggestion": sum(c[FINDER]["lr"] is None for c in cs),
            "lrsearch_within_5pct": {c["optimizer"]: c[LRSEARCH]["within_5pct"] for c in cs},
            "finder_within_5pct": {c["optimizer"]: c[FINDER]["within_5pct"] for c in cs},
        }
    return out


def _lr(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _loss(x: float | None) -> str:
    return "diverged" if x is None else f"{x:.4g}"


def _x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [
        f"Range-test suggestions, each trained {cfg['epochs']} epochs at a constant rate (training seed "
        f"{cfg['train_seed']}), against a {cfg['grid_points']}-point grid ({GRID_LOW:g}..{GRID_HIGH:g}, log). "
        f"val_loss: the lowest over the epochs; x grid: val_loss / grid best. Both tools: {cfg['repeats']} "
        f"range tests ({RT_LOW:g}..{RT_HIGH:g}, {RT_STEPS} steps, seeds 0..{cfg['repeats'] - 1}), geometric "
        f"mean of the seeds' suggestions. Tie: within {TIE:.1%}. * = outside the grid's range.",
        "",
        "| workload | optimizer | grid best lr | grid best val_loss | lrsearch lr | lrsearch val_loss | x grid "
        "| torch-lr-finder lr | torch-lr-finder val_loss | x grid | better |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in result["cells"]:
        g, a, b = c["grid"], c[LRSEARCH], c[FINDER]
        a_lr = _lr(a["lr"]) + ("*" if a["outside_grid_range"] else "")
        if b["lr"] is None:
            b_lr, b_loss = "no suggestion", "-"
        else:
            b_lr, b_loss = _lr(b["lr"]) + ("*" if b["outside_grid_range"] else ""), _loss(b["val_loss"])
            missing = sum(s is None for s in b["per_seed"])
            if missing:
                b_lr += f" ({len(b['per_seed']) - missing}/{len(b['per_seed'])} seeds)"
        lines.append(f"| {c['workload']} | {c['optimizer']} | {_lr(g['best_lr'])} | {_loss(g['best_val_loss'])} | "
                     f"{a_lr} | {_loss(a['val_loss'])} | {_x(a['ratio_to_grid'])} | {b_lr} | {b_loss} | "
                     f"{_x(b['ratio_to_grid'])} | {c['better']} |")
    zero = sorted({f"{c['workload']} {c['optimizer']}" for c in result["cells"]
                   if c["grid"]["best_val_loss"] is not None and c["grid"]["best_val_loss"] <= 0})
    if zero:
        lines.append("")
        lines.append(f"x grid and the 5% check are undefined (-, n/a) where the grid best val_loss is 0 (the "
                     f"cross-entropy underflowed to exactly 0 on the validation set): {', '.join(zero)}.")
    lines.append("")
    for w, s in result["summary"].items():
        near = ", ".join(f"{o} {'n/a' if ok is None else 'yes' if ok else 'NO'}"
                         for o, ok in s["lrsearch_within_5pct"].items())
        line = (f"{w}: lrsearch at least as good as torch-lr-finder on {s['lrsearch_at_least_as_good']}/"
                f"{s['optimizers']} optimizers ({s['lrsearch_better']} better, {s['ties']} tied, "
                f"{s['finder_better']} worse")
        if s["finder_no_suggestion"]:
            line += f"; torch-lr-finder gave no suggestion for {s['finder_no_suggestion']}"
        line += f"); lrsearch within 5% of the grid best: {near}"
        if w == "mlp-digits":
            ok = all(v is True for v in s["lrsearch_within_5pct"].values())
            line += f" -> mlp-digits check {'met' if ok else 'NOT met'}"
        lines.append(line + ".")
    return "\n".join(lines)


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    tmp.replace(path)


def _names(raw: str, known: Sequence[str], what: str, p: argparse.ArgumentParser) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    for n in names:
        if n not in known:
            p.error(f"unknown {what} {n!r}; known: {list(known)}")
    if not names:
        p.error(f"no {what} given")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    from lrsearch.workers.registry import BUILTIN_WORKLOADS, workload_names  # no torch

    p = argparse.ArgumentParser(prog="python -m bench.lr_finder", description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default=",".join(BUILTIN_WORKLOADS),
                   help="comma-separated workloads (default: every built-in)")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS), help=f"comma-separated subset of {OPTIMIZERS}")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {', '.join(QUICK_WORKLOADS)} with {', '.join(QUICK_OPTIMIZERS)}, "
                        "results in the temp dir unless --out")
    p.add_argument("--grid-points", type=int, default=GRID_POINTS, help="log-spaced grid lrs (default 16)")
    p.add_argument("--workers", type=int, default=2, help="training processes (default 2)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default bench/results/lr_finder.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.workloads, args.optimizers = ",".join(QUICK_WORKLOADS), ",".join(QUICK_OPTIMIZERS)
        if args.out == DEFAULT_OUT:  # a smoke run never overwrites the real results
            args.out = Path(tempfile.gettempdir()) / "lrsearch-lr-finder-quick.json"
    workloads = _names(args.workloads, workload_names(), "workload", p)
    optimizers = _names(args.optimizers, OPTIMIZERS, "optimizer", p)
    if args.grid_points < 2:
        p.error("--grid-points must be at least 2")
    if _version("torch-lr-finder") is None:
        p.error("torch-lr-finder is not installed here: run `make bench-finder` (it lives in .venv-bench)")
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("TQDM_DISABLE", "1")  # torch-lr-finder's progress bar, in the workers

    lrs = grid_lrs(args.grid_points)
    cells_wo = [(w, o) for w in workloads for o in optimizers]
    seeds = list(range(REPEATS))
    say(f"{len(cells_wo)} workload x optimizer cells: {len(lrs)} grid trainings, {2 * REPEATS} range tests "
        f"and 2 trainings each, {args.workers} processes")
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.workers, initializer=_init_worker) as pool:
        # Range tests first (short), so the trainings at their suggestions queue while the grid runs.
        rt_f = {(w, o): [pool.submit(_lrsearch_job, (w, o, k)) for k in seeds] for w, o in cells_wo}
        fi_f = {(w, o): [pool.submit(_finder_job, (w, o, k)) for k in seeds] for w, o in cells_wo}
        grid_f = {(w, o): [pool.submit(_train_job, (w, o, lr, EPOCHS, TRAIN_SEED)) for lr in lrs]
                  for w, o in cells_wo}
        check_f: dict[tuple[str, str], dict[str, Future | None]] = {}
        suggested: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for key in cells_wo:
            finders = [f.result() for f in fi_f[key]]
            s = suggested[key] = suggestions([f.result() for f in rt_f[key]], finders)
            a_lr, b_lr = s[LRSEARCH]["lr"], s[FINDER]["lr"]
            say(f"{key[0]} {key[1]}: lrsearch suggests {a_lr:.3g} (steps "
                f"{[r['steps'] for r in s[LRSEARCH]['range_tests']]}), torch-lr-finder {_lr(b_lr)} (per seed "
                f"{[_lr(v) for v in s[FINDER]['per_seed']]}, points {[f['points'] for f in finders]})")
            for f in finders:
                if f["error"]:
                    say(f"  torch-lr-finder seed {f['seed']}: {f['error']}")
            check_f[key] = {
                LRSEARCH: pool.submit(_train_job, (key[0], key[1], a_lr, EPOCHS, TRAIN_SEED)),
                FINDER: pool.submit(_train_job, (key[0], key[1], b_lr, EPOCHS, TRAIN_SEED)) if b_lr else None,
            }
        rt_seconds = time.monotonic() - t0
        cells = []
        for key in cells_wo:
            cell = {"workload": key[0], "optimizer": key[1], "grid": grid_summary([f.result() for f in grid_f[key]]),
                    **suggested[key]}
            finish_cell(cell, {side: (f.result() if f is not None else None) for side, f in check_f[key].items()})
            cells.append(cell)
            say(f"{key[0]} {key[1]}: grid best {_loss(cell['grid']['best_val_loss'])} at "
                f"{_lr(cell['grid']['best_lr'])}; lrsearch {_loss(cell[LRSEARCH]['val_loss'])}, torch-lr-finder "
                f"{_loss(cell[FINDER]['val_loss'])} -> {cell['better']}")
    seconds = time.monotonic() - t0

    result: dict[str, Any] = {
        "benchmark": "lr_finder",
        "date": time.strftime("%Y-%m-%d"),
        "versions": {"torch": _version("torch"), "torch_lr_finder": _version("torch-lr-finder"),
                     "matplotlib": _version("matplotlib"), "lrsearch": _version("lrsearch"),
                     "python": sys.version.split()[0]},
        "config": {"workloads": workloads, "optimizers": optimizers, "epochs": EPOCHS, "train_seed": TRAIN_SEED,
                   "data_seed": DATA_SEED, "schedule": "constant", "warmup_fraction": 0.0,
                   "grid_points": args.grid_points, "grid_lrs": lrs, "repeats": REPEATS,
                   "range_test": {"lr_low": RT_LOW, "lr_high": RT_HIGH, "num_steps": RT_STEPS},
                   "lrsearch": "run_range_test(divergence_factor=4, smoothing=0.98) x seeds, "
                               "lrsearch.search.range_test.summarize(...)['lr']",
                   "torch_lr_finder": "LRFinder.range_test(end_lr=10, num_iter=100, step_mode='exp', smooth_f=0.05, "
                                      f"diverge_th=5) x seeds, plot({FINDER_PLOT}) suggestion, geometric mean",
                   "tie": TIE, "near_grid": NEAR_GRID, "workers": args.workers, "torch_threads": 1,
                   "quick": args.quick},
        "machine": {"cpus": os.cpu_count()},
        "cells": cells,
        "summary": summarize_workloads(cells, workloads),
        "seconds": {"total": round(seconds, 1), "until_suggestions": round(rt_seconds, 1),
                    "median_training": round(statistics.median(
                        t["seconds"] for fs in grid_f.values() for t in (f.result() for f in fs)), 3)},
    }
    result["table"] = render(result)
    _write(args.out, result)
    print(result["table"])
    print(f"\nWall time {seconds:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
