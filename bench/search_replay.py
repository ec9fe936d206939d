"""Many seeds of the search, replayed in this process: what three or five seeds cannot settle.

``bench.search_efficiency`` runs the search through the service, a few seeds at a time, and its
ratios move a lot from run to run. This replays the same search for many seeds in minutes: the
service's own strategy and early-stopping objects (``search.strategies``, ``search.early_stopping``)
are asked and told exactly as the runner asks and tells them, with ``max_concurrent`` slots
training side by side at the same speed (every epoch takes one tick; a slot that frees asks for
its next trial at once), but with no Ray, no store and no timing noise. Every config's full curve is trained once
with ``workers.trainer`` (as a 1-CPU actor trains it) and cached on disk, so variants that propose
the same config share the training and a rerun trains nothing new. ``auto``'s range tests are run
with ``workers.range_test`` as an actor runs them, cached the same way, and cost their steps as
batches (the service benchmark's unit: a batch is ``batch size / training examples`` of an epoch).

Reported per variant:

* at ``--budget`` trials (30, the issue's done-when check): the median epochs consumed and the
  median best val_loss over all seeds (the lowest val_loss any trial reached, a pruned one's
  included, as ``GET /jobs/{id}/best`` ranks them and the service benchmark counts), as ratios
  to ``random`` on the same seeds, and the share of all 3-seed subsets in which both lines of the
  check hold (median best within 2% of random's, at most half its epochs) -- how likely a 3-seed
  run is to pass;
* at ``--target-budget`` trials (100, the benchmark): in how many seeds a trial came within 2% of
  that seed's grid best, and the median epochs until it did, next to the plain Optuna script.

One replay is one draw of each search. ``--draws K`` replays every search K times, seeded with
its seed + N, N + 1000, ... (the trainings, grid bests and the plain Optuna script stay), and adds
the mean, lowest and highest of each figure over the draws: the same 40 seeds move by several seeds of
reach from one draw to the next, as much as a change to the search does. ``--workers N`` replays
the seeds in N processes (the results do not depend on it).

The grids come from ``bench/results/search_efficiency.json`` where it has the seed, else from an
earlier run of this one (its default results file or ``--out``), else they are trained here and
kept in the results file.

Trials started together reach each epoch at the same tick; the lower trial number is heard first, or,
with ``--ties random``, the order is drawn from the search's seed (see ``replay``).

``--asha GRACE,FACTOR`` replays the variants with ASHA (bayesian+asha, auto, bayesian-gp+asha) under
other rung settings than the service benchmark's ``2,3``: how the figures move with them, without a patch.

``--target region`` measures the 100-trial part against a region target instead of the grid best:
each seed's 5 best grid configs trained again at lr x 0.99, x 1 and x 1.01 (cached with the curves),
each scored by the worst of the three, and the lowest score. On seeds whose grid best is a single
lucky training, that is what a search can reach by landing within 1% of a good lr.

With ``--draws K`` (K >= 2) every seed is also counted as one landscape searched with its K draws as
the search seeds, as the service benchmark's ``--training-seed N`` runs its seeds (``landscapes``): on
how many the check holds over the first 3 draws, and on how many every draw reaches 2%.
``--optuna-per-draw`` runs the plain Optuna script on every draw too, its sampler seeded as the draw's
searches (the trainings still the seed's): each draw's 5-seed share is then measured against its own
plain Optuna, and the landscapes on which the benchmark's line holds are counted.

``bayesian-gp+asha`` (bayesian with ``"options": {"sampler": "gp"}``) replays only when named in
``--variants``: GP's suggestions cost about 0.3 s each at 100 trials, against TPE's 15 ms.
``bayesian-tr+asha`` (bayesian with ``"options": {"lr_window_decades": 1.0}``) also replays only when
named.

Run: ``python -m bench.search_replay`` (``--seeds 40``; ``--variants`` a subset; ``--draws 5
--workers 2``; ``--ties random``; ``--asha 2,2``; ``--target region``; ``--optuna-per-draw``; ``--quick`` for a smoke
run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import pickle
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from bench.search_efficiency import (
    ASHA,
    CONCURRENCY,
    DEFAULT_VARIANTS,
    OPTUNA,
    REGION_FACTORS,
    REGION_TOP,
    TOLERANCE,
    VARIANTS,
    batch_epochs,
    range_test_points,
    region_target,
    run_grid,
    run_plain_optuna,
    say,
    standard_space,
    train_curve,
    untrained_val_loss,
)
from bench.search_efficiency import (
    DEFAULT_OUT as SERVICE_RESULTS,
)
from bench.search_efficiency import (
    _median as median_reached,
)
from lrsearch.search.decisions import ENDS, Evaluation, decide, range_test_outcome, trial_outcome
from lrsearch.workers.trainer import learned_nothing

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "search_replay.json"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "lrsearch-search-replay-curves.pkl"
DRAW_STRIDE = 1000  # --draws: search seeds of successive draws this far apart
TIES = ("number", "random")  # replay(): the order of trials that reach an epoch at the same tick
TARGETS = ("grid", "region")  # --target: what the 100-trial part's 2% is of
REPLAYABLE = [v for v, how in VARIANTS.items() if how is not None]
DEFAULT_REPLAYED = [v for v in REPLAYABLE if v in DEFAULT_VARIANTS]
Curve = tuple[list[float | None], bool]
Points = list[tuple[float, float]]


class CurveSource(Protocol):
    """Where a replay's trainings come from: trained and cached (CurveCache), or a workload's
    dense-grid landscape (bench/search_workloads.py)."""

    def get(self, config: dict[str, Any], seed: int, epochs: int) -> Curve: ...
    def range_test(self, config: dict[str, Any], seed: int) -> Points: ...
    def untrained_val_loss(self, seed: int) -> float: ...
    def range_test_step(self) -> float: ...


class CurveCache:
    """Full training curves by (config, seed, epochs), pickled between runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.new = 0
        try:
            with path.open("rb") as f:
                self.curves: dict[tuple[str, int, int], Curve | Points] = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError):
            self.curves = {}

    def get(self, config: dict[str, Any], seed: int, epochs: int) -> Curve:
        return self._cached(config, seed, epochs, lambda: train_curve(config, epochs, seed))  # type: ignore[return-value]  # a training's key holds a Curve

    def range_test(self, config: dict[str, Any], seed: int) -> Points:
        """A range test's (lr, batch loss) points; epochs 0 in the key (a range test has none)."""
        return self._cached(config, seed, 0, lambda: range_test_points(config, seed))  # type: ignore[return-value]  # epochs 0 holds Points

    def _cached(self, config: dict[str, Any], seed: int, epochs: int,
                compute: Callable[[], Curve | Points]) -> Curve | Points:
        from lrsearch.search.strategies import config_key

        key = (config_key(config), seed, epochs)
        if key not in self.curves:
            self.curves[key] = compute()
            self.new += 1
            if self.new % 200 == 0:
                self.save()
        return self.curves[key]

    def untrained_val_loss(self, seed: int) -> float:
        """The val_loss every trial of a job with this seed starts from."""
        return untrained_val_loss(seed)

    def range_test_step(self) -> float:
        """What one range-test step costs, in the rounds (epochs) the replay counts."""
        return batch_epochs()

    def save(self) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            pickle.dump(self.curves, f)
        os.replace(tmp, self.path)


def replay(variant: str, seed: int, budget: int, epochs: int, cache: CurveSource,
           target: float | None = None, concurrency: int = CONCURRENCY,
           search_seed: int | None = None, ties: str = "number",
           asha: dict[str, Any] | None = None, *, how: dict[str, Any] | None = None,
           space: dict[str, Any] | None = None, eval_every: int | None = None) -> dict[str, Any]:
    """One job of ``variant`` as the service would run it; epochs counted as they are trained.

    ``seed`` is the job's seed. In the service it seeds both the training (data split, model
    init) and the search; ``search_seed`` (default: ``seed``) seeds the search alone, so the same
    trainings and grid bests can be searched again with other draws.

    Trials started together reach each epoch at the same tick. ``ties`` orders them: ``"number"``
    (the lower trial number first, as the service's slots usually go when both train at the same
    speed: the lower one started first) or ``"random"`` (a draw seeded by the search seed, as when
    their speeds differ). ASHA's rungs hear them in that order, and with a rung holding fewer
    than 3 values the order decides who goes on.

    A range test (``auto``'s first trials) holds its slot for its steps, each a batch: ``batch /
    training examples`` of an epoch, the unit the service benchmark counts its rows in. It is
    told to the strategy when it ends, as the runner tells it, and never to the early stopping.

    ``asha`` (an ``early_stopping`` spec) replaces the variant's ASHA; a variant without early
    stopping stays without.

    ``how`` (a JobSpec's strategy, options and early stopping, as ``VARIANTS`` holds them) and
    ``space`` replace the variant's and the standard space; ``cache`` is any ``CurveSource`` (a
    workload's landscape, bench/search_workloads.py). With ``eval_every``, ``epochs`` counts a step
    job's evaluations (rounds), each ``eval_every`` steps. The run's ``trace`` holds (rounds
    trained, best so far) each time the best so far fell: its anytime curve."""
    from lrsearch.search.early_stopping import parse_early_stopping
    from lrsearch.search.space import parse_space
    from lrsearch.search.strategies import STRATEGIES, StrategySpec, TrialOutcome, is_range_test

    how = VARIANTS[variant] if how is None else how
    assert how is not None
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    search_seed = seed if search_seed is None else search_seed
    order = random.Random(search_seed)
    # A step job's schedule counts steps: the strategy completes configs in them (as the service does).
    spec = StrategySpec(space=parse_space(space or standard_space()), seed=search_seed, max_trials=budget,
                        epochs=epochs * (eval_every or 1), options=how.get("options") or {}, eval_every=eval_every)
    strategy = STRATEGIES[how["strategy"]](spec)
    rule = how["early_stopping"] if asha is None or how["early_stopping"] is None else asha
    stopper = parse_early_stopping(rule, epochs, eval_every)
    # With early stopping the service's trials also stop after an epoch that learned nothing.
    untrained = cache.untrained_val_loss(seed) if stopper is not None and epochs > 1 else None
    trace: list[tuple[float | int, float]] = []
    running: list[dict[str, Any]] = []
    finished: list[dict[str, Any]] = []
    trained = 0.0
    epochs_to_target: float | None = None
    next_number = 0

    def fill() -> None:
        nonlocal next_number
        while len(running) < concurrency and next_number < budget:
            config = strategy.suggest()
            if not isinstance(config, dict):  # WAIT (range tests still running) or the end
                return
            trial: dict[str, Any] = {"number": next_number, "config": config, "done": 0,
                                     "tie": next_number if ties == "number" else order.random()}
            if is_range_test(config):
                trial["points"] = cache.range_test(config, seed)
                trial["cost"] = len(trial["points"]) * cache.range_test_step()
                trial["next_at"] = now + trial["cost"]
            else:
                trial["curve"], trial["diverged"] = cache.get(config, seed, epochs)
                trial["next_at"] = now + 1
            running.append(trial)
            next_number += 1

    def end(trial: dict[str, Any], outcome: TrialOutcome) -> None:
        running.remove(trial)
        strategy.observe(outcome)
        finished.append({"status": outcome.status, "val_loss": outcome.val_loss})
        fill()

    now = 0.0  # ticks: one epoch each
    fill()
    while running:
        # The event that comes first (an epoch's end, a range test's end): slots train at the same
        # speed, ties as ``ties`` says.
        trial = min(running, key=lambda t: (t["next_at"], t["tie"]))
        now = trial["next_at"]
        if "points" in trial:
            trained += trial["cost"]
            end(trial, range_test_outcome(trial["number"], trial["config"], "completed", trial["points"]))
            continue
        value = trial["curve"][trial["done"]]
        trial["done"] += 1
        trial["next_at"] = now + 1
        trained += 1
        if epochs_to_target is None and target is not None and value is not None and value <= target:
            epochs_to_target = trained
        if value is not None:
            improve(trace, _whole(trained), value)
        # Decided as the runner decides (search/decisions.py); a value of None is a NaN loss.
        last = trial["done"] >= len(trial["curve"])
        verdict = decide(Evaluation(number=trial["number"], index=trial["done"] - 1, score=value, last=last,
                                    diverged=value is None or (last and trial["diverged"]),
                                    stalled=trial["done"] == 1 and learned_nothing(value, untrained)), stopper)
        if verdict not in ENDS:
            continue
        if stopper is not None:
            stopper.trial_finished(trial["number"], verdict)
        end(trial, trial_outcome(trial["number"], trial["config"], verdict, trial["curve"][:trial["done"]]))
    # As the service's /best (and the service benchmark): every trial with a finite val_loss ranks,
    # a pruned one with the lowest loss it reached; a range test has none.
    best = min((t["val_loss"] for t in finished if t["val_loss"] is not None), default=None)
    # Whole epochs stay ints (the figures of runs without range tests read as before).
    return {"variant": variant, "seed": seed, "budget": budget, "epochs": _whole(trained), "best_val_loss": best,
            "epochs_to_2pct": None if epochs_to_target is None else _whole(epochs_to_target), "trace": trace,
            "statuses": {s: sum(1 for t in finished if t["status"] == s) for s in ("completed", "pruned", "diverged")}}


def improve(trace: list[tuple[float | int, float]], trained: float | int, value: float) -> None:
    """Add (trained, value) to an anytime trace when ``value`` is a new best so far."""
    if not trace or value < trace[-1][1]:
        trace.append((trained, value))


def rule_of(variant: str, asha: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The variant's early-stopping spec, ``asha`` in place of its ASHA where given."""
    how = VARIANTS[variant]
    assert how is not None
    return how["early_stopping"] if asha is None or how["early_stopping"] is None else asha


def parse_asha(text: str) -> dict[str, Any]:
    """``--asha GRACE,FACTOR`` as an early-stopping spec; ValueError names what is wrong."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"expected GRACE,FACTOR (two whole numbers, e.g. 2,3), got {text!r}")
    return {"kind": "asha", "grace_epochs": int(parts[0]), "reduction_factor": int(parts[1])}


def _whole(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 3)


def optuna_epochs_to_target(seed: int, budget: int, epochs: int, target: float,
                            search_seed: int | None = None) -> int | None:
    """The plain Optuna script's epochs to ``target`` on seed ``seed``'s trainings, its sampler
    seeded with ``search_seed`` (default: ``seed``)."""
    search_seed = seed if search_seed is None else search_seed
    rows = run_plain_optuna(search_seed, budget, epochs, training_seed=seed)["rows"]
    return next((i + 1 for i, row in enumerate(rows) if row[2] is not None and row[2] <= target), None)


def _median(xs: Sequence[float | None]) -> float:
    """search_efficiency's median (None: never reached), as +inf where unreached, for comparisons."""
    m = median_reached(xs)
    return math.inf if m is None else m


def _reach(hits: list[int | None]) -> dict[str, Any]:
    return {"per_seed": hits, "reached": sum(h is not None for h in hits), "median": median_reached(hits)}


def _subset_share(n: int, k: int, passes: Callable[[tuple[int, ...]], bool]) -> float:
    """Share of all k-seed subsets (index tuples) of n seeds for which ``passes`` holds."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(passes(idx) for idx in subsets) / len(subsets) if subsets else math.nan


def _at(xs: Sequence[Any], idx: tuple[int, ...]) -> list[Any]:
    return [xs[i] for i in idx]


def line_holds(hits: Sequence[int | None], optuna_hits: Sequence[int | None]) -> bool:
    """The benchmark's line on these runs: every one reaches 2% of its target, at a median of at
    most 0.7x the plain Optuna script's on the same runs."""
    return all(h is not None for h in hits) and _median(hits) <= 0.7 * _median(optuna_hits)


def check_holds(epochs: Sequence[float], best: Sequence[float | None], random_epochs: Sequence[float],
                random_best: Sequence[float | None]) -> bool:
    """The done-when check on these runs: a median best within 2% of random's, at most half its epochs."""
    return (_median(epochs) <= 0.5 * _median(random_epochs)
            and _median(best) <= (1 + TOLERANCE) * _median(random_best))


def five_seed_pass_share(hits: Sequence[int | None], optuna_hits: Sequence[int | None]) -> float:
    """Share of all 5-seed subsets in which the benchmark's line holds (``line_holds``)."""
    return _subset_share(len(hits), 5, lambda idx: line_holds(_at(hits, idx), _at(optuna_hits, idx)))


def three_seed_pass_share(epochs: Sequence[int], best: Sequence[float | None], random_epochs: Sequence[int],
                          random_best: Sequence[float | None]) -> float:
    """Share of all 3-seed subsets in which the check holds (``check_holds``)."""
    return _subset_share(len(epochs), 3, lambda idx: check_holds(_at(epochs, idx), _at(best, idx),
                                                                 _at(random_epochs, idx), _at(random_best, idx)))


def grids_for(seeds: Sequence[int], epochs: int, points: int, workers: int,
              own: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each seed's grid (best val_loss, top configs): from the service benchmark's results, this
    one's, or trained."""
    known: dict[str, Any] = {}
    try:
        service = json.loads(SERVICE_RESULTS.read_text())
        if service.get("config", {}).get("grid_points") == points and service["config"].get("epochs") == epochs:
            known.update(service.get("grid", {}))
    except (OSError, ValueError):
        pass
    known.update(own)
    out = {}
    for seed in seeds:
        if str(seed) not in known:
            say(f"grid seed {seed}: {points * 16} configs x {epochs} epochs")
            known[str(seed)] = own[str(seed)] = run_grid(seed, points, epochs, workers)
        out[str(seed)] = known[str(seed)]
    return out


def summarize(runs: list[dict[str, Any]], variants: Sequence[str], budget: int, target_budget: int,
              optuna_hits: Sequence[int | None] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The check (ratios to random, 3-seed pass share) and the 2% part (reach, 5-seed pass share) of
    one draw's runs."""

    def of(v: str, b: int) -> list[dict[str, Any]]:
        return sorted((r for r in runs if r["variant"] == v and r["budget"] == b), key=lambda r: r["seed"])

    rand = of("random", budget)
    re, rb = [r["epochs"] for r in rand], [r["best_val_loss"] for r in rand]
    check = {}
    for v in variants:
        rs = of(v, budget)
        e, b = [r["epochs"] for r in rs], [r["best_val_loss"] for r in rs]
        check[v] = {"median_epochs": _median(e), "epochs_ratio": _median(e) / _median(re),
                    "median_best": _median(b), "best_ratio": _median(b) / _median(rb),
                    "pass_share": three_seed_pass_share(e, b, re, rb)}
    target: dict[str, Any] = {}
    if target_budget:
        for v in variants:
            target[v] = _reach([r["epochs_to_2pct"] for r in of(v, target_budget)])
            if optuna_hits is not None:
                target[v]["pass_share"] = five_seed_pass_share(target[v]["per_seed"], optuna_hits)
        if optuna_hits is not None:
            target[OPTUNA] = _reach(list(optuna_hits))
    return check, target


def landscapes(runs: list[dict[str, Any]], variants: Sequence[str], budget: int, target_budget: int,
               offsets: Sequence[int], optuna_by_draw: dict[int, list[int | None]] | None) -> dict[str, Any]:
    """Each seed as one landscape and its draws as the search seeds, as the service benchmark runs
    its seeds on one training seed: per variant, the landscapes on which the check holds over the
    first 3 draws (against random's same draws), on which every draw reaches 2% at
    ``target_budget``, and, with the plain Optuna script run on every draw, on which the
    benchmark's line holds (every draw reaches, at a median of at most 0.7x plain Optuna's over the
    same draws)."""
    by = {(r["variant"], r["seed"], r["budget"], r["search_seed_offset"]): r for r in runs}
    seeds = sorted({r["seed"] for r in runs})
    first3 = list(offsets[:3])
    out: dict[str, Any] = {"draws": len(offsets), "check_draws": len(first3), "landscapes": len(seeds)}
    def of(variant: str, seed: int, b: int, key: str, draws: Sequence[int]) -> list[Any]:
        return [by[(variant, seed, b, off)][key] for off in draws]

    for v in variants:
        row: dict[str, Any] = {}
        if v != "random" and len(first3) == 3:
            row["check"] = [s for s in seeds if check_holds(
                of(v, s, budget, "epochs", first3), of(v, s, budget, "best_val_loss", first3),
                of("random", s, budget, "epochs", first3), of("random", s, budget, "best_val_loss", first3))]
        if target_budget:
            hits = {s: of(v, s, target_budget, "epochs_to_2pct", offsets) for s in seeds}
            row["every_draw_reached"] = [s for s in seeds if all(h is not None for h in hits[s])]
            if optuna_by_draw is not None:
                row["line"] = [s for s in seeds
                               if line_holds(hits[s], [optuna_by_draw[off][s] for off in offsets])]
                if "check" in row:
                    row["both"] = [s for s in row["line"] if s in row["check"]]
        out[v] = row
    return out


def over_draws(draws: list[dict[str, Any]]) -> dict[str, Any]:
    """Each variant's figures over the draws: mean, lowest and highest."""
    def spread(xs: list[float]) -> dict[str, float]:
        return {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs)}

    out: dict[str, Any] = {}
    for v in draws[0]["check"]:
        row = {k: spread([d["check"][v][k] for d in draws]) for k in ("epochs_ratio", "best_ratio", "pass_share")}
        if v in draws[0]["target"]:
            row["reached"] = spread([d["target"][v]["reached"] for d in draws])
            if "pass_share" in draws[0]["target"][v]:
                row["five_seed_pass_share"] = spread([d["target"][v]["pass_share"] for d in draws])
        out[v] = row
    return out


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    offset = cfg.get("search_seed_offset") or 0
    drawn = f" (each search seeded with its seed + {offset})" if offset else ""
    if cfg.get("ties", "number") == "random":
        drawn += " (trials reaching an epoch together heard in a seeded random order)"
    if cfg.get("asha"):
        drawn += f" (ASHA grace_epochs {cfg['asha']['grace_epochs']}, reduction_factor {cfg['asha']['reduction_factor']})"
    lines = [f"Replayed in process: {len(cfg['seeds'])} seeds{drawn}, "
             f"{cfg['budget']} trials x {cfg['epochs']} epochs, "
             f"{cfg['concurrency']} slots at the same speed; ratios to random on the same seeds:", "",
             "| variant | median epochs | vs random | median best val_loss | vs random | 3-seed runs passing the check |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for v, s in result["check"].items():
        lines.append(f"| {v} | {s['median_epochs']:.1f} | {s['epochs_ratio']:.2f}x | {s['median_best']:.4f} | "
                     f"{s['best_ratio']:.3f}x | {s['pass_share']:.0%} |")
    if result.get("target"):
        of = "the region target" if cfg.get("target") == "region" else "the grid best"
        lines += ["", f"At {cfg['target_budget']} trials: seeds within 2% of {of}, and the median epochs until then "
                      "(a seed that never gets there counts as infinitely many):", "",
                  "| variant | reached | median epochs to 2% | vs plain Optuna | 5-seed runs passing the benchmark's line |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        base = result["target"].get(OPTUNA, {}).get("median")
        for v, s in result["target"].items():
            med = s["median"]
            ratio = f"{med / base:.2f}x" if base and med is not None else "n/a"
            share = f"{s['pass_share']:.0%}" if "pass_share" in s else "n/a"
            name = "plain Optuna (TPE + Hyperband)" if v == OPTUNA else v
            lines.append(f"| {name} | {s['reached']}/{len(s['per_seed'])} | "
                         f"{'not reached' if med is None else f'{med:.0f}'} | {ratio} | {share} |")
    draws = result.get("draws") or []
    if len(draws) > 1:
        offsets = ", ".join(str(d["search_seed_offset"]) for d in draws)
        same = "the trainings and grid bests the same, plain Optuna drawn with each" if cfg.get("optuna_per_draw") \
            else "the trainings, grid bests and plain Optuna the same"
        lines += ["", f"The tables above are the first draw. Over {len(draws)} draws (each search seeded with its "
                      f"seed + {offsets}; {same}), mean (lowest-highest):", "",
                  "| variant | epochs vs random | best vs random | 3-seed runs passing the check | seeds within 2% at "
                  f"{cfg['target_budget']} trials | 5-seed runs passing the benchmark's line |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        n = len(cfg["seeds"])

        def cell(s: dict[str, float] | None, fmt: str, ends: str | None = None) -> str:
            ends = ends or fmt
            return "n/a" if s is None else f"{fmt.format(s['mean'])} ({ends.format(s['min'])}-{ends.format(s['max'])})"

        for v, s in result["over_draws"].items():
            reached = cell(s.get("reached"), "{:.1f}/" + str(n), "{:.0f}")
            lines.append(f"| {v} | {cell(s['epochs_ratio'], '{:.2f}x')} | {cell(s['best_ratio'], '{:.3f}x')} | "
                         f"{cell(s['pass_share'], '{:.0%}')} | {reached} | "
                         f"{cell(s.get('five_seed_pass_share'), '{:.0%}')} |")
    ls = result.get("landscapes")
    if ls:
        n, k = ls["landscapes"], ls["draws"]
        lines += ["", f"Each seed's trainings as one landscape and its {k} draws as {k} search seeds on it (as the "
                      "service benchmark runs its seeds with --training-seed N): landscapes on which the check holds "
                      f"over the first {ls['check_draws']} draws, on which every draw reaches 2% at "
                      f"{cfg['target_budget']} trials, on which the benchmark's line holds (every draw, at most "
                      "0.7x plain Optuna's median epochs over the same draws), and on which both lines hold:", "",
                  "| variant | check | every draw within 2% | the benchmark's line | both |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for v in result["check"]:
            if v == "random" or v not in ls:
                continue
            row = ls[v]

            def count(key: str, row: dict[str, Any] = row) -> str:
                return f"{len(row[key])}/{n}" if key in row else "n/a"

            lines.append(f"| {v} | {count('check')} | {count('every_draw_reached')} | {count('line')} | "
                         f"{count('both')} |")
    return "\n".join(lines)


Task = tuple[str, int, int, int, float | None]  # variant, seed, budget, search seed, target


def replay_task(task: Task, epochs: int, cache: CurveCache, ties: str = "number",
                asha: dict[str, Any] | None = None) -> dict[str, Any]:
    """One task's replay, marked with its draw (the search seed's offset from the seed)."""
    variant, seed, budget, search_seed, target = task
    run = replay(variant, seed, budget, epochs, cache, target, search_seed=search_seed, ties=ties, asha=asha)
    return {**run, "search_seed_offset": search_seed - seed}


def replay_many(tasks: Sequence[Task], epochs: int, cache_path: Path,
                ties: str = "number", asha: dict[str, Any] | None = None,
                ) -> tuple[list[dict[str, Any]], dict[tuple[str, int, int], Curve | Points]]:
    """Replay (variant, seed, budget, search_seed, target) tasks on a private copy of the curve cache:
    the runs, and the curves trained on the way (a worker's share; the caller merges them)."""
    import torch

    torch.set_num_threads(1)  # as a 1-CPU TrialActor
    cache = CurveCache(cache_path)
    known = set(cache.curves)
    cache.save = lambda: None  # type: ignore[method-assign]  # the caller saves the merged cache
    runs = []
    for i, task in enumerate(tasks, 1):
        runs.append(replay_task(task, epochs, cache, ties, asha))
        if i % 50 == 0 or i == len(tasks):
            say(f"worker {os.getpid()}: {i}/{len(tasks)} replays")
    return runs, {k: v for k, v in cache.curves.items() if k not in known}


def _optuna_hits(seeds: Sequence[int], offset: int, budget: int, epochs: int,
                 targets: dict[str, float]) -> list[int | None]:
    import torch

    torch.set_num_threads(1)  # as a 1-CPU TrialActor
    return [optuna_epochs_to_target(s, budget, epochs, targets[str(s)], search_seed=s + offset)
            if str(s) in targets else None for s in seeds]


def optuna_hits_of(seeds: Sequence[int], offset: int, budget: int, epochs: int, targets: dict[str, float],
                   workers: int = 1) -> list[int | None]:
    """The plain Optuna script's epochs to each seed's target, its sampler seeded with seed + ``offset``."""
    if workers == 1 or len(seeds) < 2:
        return _optuna_hits(seeds, offset, budget, epochs, targets)
    import multiprocessing

    shares = [list(seeds[w::workers]) for w in range(workers)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.starmap(_optuna_hits, [(share, offset, budget, epochs, targets) for share in shares])
    hits = {s: h for share, part in zip(shares, parts) for s, h in zip(share, part)}
    return [hits[s] for s in seeds]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.search_replay", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (default 20)")
    p.add_argument("--budget", type=int, default=30, help="trials of the done-when check (default 30)")
    p.add_argument("--target-budget", type=int, default=100, help="trials of the 2%%-of-grid part; 0 skips it")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--variants", default=",".join(DEFAULT_REPLAYED),
                   help=f"comma-separated subset of {REPLAYABLE} (default {DEFAULT_REPLAYED})")
    p.add_argument("--no-optuna", action="store_true", help="leave the plain Optuna script out of the 100-trial part")
    p.add_argument("--grid-points", type=int, default=25)
    p.add_argument("--grid-workers", type=int, default=2)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="curve cache (default in the temp dir)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--search-seed-offset", type=int, default=0,
                   help="seed each search with its seed + N, the trainings (and the plain Optuna script) as "
                        "before: how much of a result is the draw")
    p.add_argument("--draws", type=int, default=1,
                   help=f"replay every search K times, seeded with its seed + N, N + {DRAW_STRIDE}, ...; "
                        "reports the first draw and the mean, lowest and highest over all")
    p.add_argument("--workers", type=int, default=1, help="processes replaying seeds side by side (default 1)")
    p.add_argument("--ties", choices=TIES, default="number",
                   help="trials reaching an epoch at the same tick: the lower number first (default), or in "
                        "a seeded random order")
    p.add_argument("--asha", metavar="GRACE,FACTOR",
                   help="ASHA's grace_epochs and reduction_factor for the variants that use it (default "
                        f"{ASHA['grace_epochs']},{ASHA['reduction_factor']}, as the service benchmark)")
    p.add_argument("--target", choices=TARGETS, default="grid",
                   help="the 100-trial part's 2%% is of each seed's grid best (default), or of its region "
                        "target: the grid's 5 best configs trained at lr x 0.99, x 1, x 1.01, each scored by "
                        "the worst of the three, the lowest score")
    p.add_argument("--optuna-per-draw", action="store_true",
                   help="run the plain Optuna script on every draw too (its sampler seeded as the draw's "
                        "searches): each draw's 5-seed shares use its own, and the per-landscape line is counted")
    p.add_argument("--quick", action="store_true", help="a smoke run: 3 seeds, 8 trials, no 100-trial part")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.target_budget = 3, 8, 0
        if args.out == DEFAULT_OUT:
            args.out = Path(tempfile.gettempdir()) / "lrsearch-search-replay-quick.json"
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in REPLAYABLE:
            p.error(f"unknown variant {v!r}; replayable: {REPLAYABLE}")
    if args.draws < 1 or args.workers < 1:
        p.error("--draws and --workers must be at least 1")
    from lrsearch.search.early_stopping import parse_early_stopping
    from lrsearch.search.errors import SpecError

    asha = None
    if args.asha is not None:
        try:
            asha = parse_asha(args.asha)
        except ValueError as e:
            p.error(f"--asha: {e}")
    for v in variants:
        try:
            parse_early_stopping(rule_of(v, asha), args.epochs)
        except SpecError as e:
            p.error(f"{v} cannot run {args.epochs} epochs: {e}")
    if "random" not in variants:
        variants.insert(0, "random")  # the check's reference
    import torch

    torch.set_num_threads(1)  # as a 1-CPU TrialActor
    seeds = list(range(args.seeds))
    offsets = [args.search_seed_offset + d * DRAW_STRIDE for d in range(args.draws)]
    t0 = time.monotonic()
    cache = CurveCache(args.cache)
    # Grids trained by an earlier run, into this --out or the default one, are not trained again.
    own_grid: dict[str, Any] = {}
    for path in dict.fromkeys([DEFAULT_OUT, args.out]):
        try:
            previous = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        cfg = previous.get("config", {})
        if cfg.get("grid_points") == args.grid_points and cfg.get("epochs") == args.epochs:
            own_grid.update(previous.get("grid", {}))
    targets: dict[str, float] = {}
    regions: dict[str, Any] = {}
    if args.target_budget:
        grids = grids_for(seeds, args.epochs, args.grid_points, args.grid_workers, own_grid)
        if args.target == "region":
            for seed in seeds:
                regions[str(seed)] = region_target(grids[str(seed)], args.epochs,
                                                   lambda c, seed=seed: cache.get(c, seed, args.epochs))
            say(f"region targets: {len(seeds) * REGION_TOP * len(REGION_FACTORS)} trainings, {cache.new} new")
        bests = {k: (regions[k]["val_loss"] if regions else g["best_val_loss"]) for k, g in grids.items()}
        targets = {k: b * (1 + TOLERANCE) for k, b in bests.items() if b is not None}
    tasks: list[Task] = [(v, seed, budget, seed + off, targets.get(str(seed)) if budget == args.target_budget else None)
             for off in offsets for budget in (args.budget, args.target_budget) if budget
             for v in variants for seed in seeds]
    runs: list[dict[str, Any]] = []
    if args.workers == 1:
        try:
            for task in tasks:
                runs.append(replay_task(task, args.epochs, cache, args.ties, asha))
        finally:
            cache.save()
    else:
        import multiprocessing

        cache.save()  # the workers start from what is cached now
        shares = [[t for t in tasks if t[1] % args.workers == w] for w in range(args.workers)]
        say(f"{len(tasks)} replays on {args.workers} workers")
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            for share_runs, curves in pool.starmap(replay_many, [(s, args.epochs, args.cache, args.ties, asha)
                                                                 for s in shares]):
                runs.extend(share_runs)
                cache.curves.update(curves)
                cache.new += len(curves)
        cache.save()
        order = {t[:4]: i for i, t in enumerate(tasks)}
        runs.sort(key=lambda r: order[(r["variant"], r["seed"], r["budget"], r["seed"] + r["search_seed_offset"])])
    say("replays done")
    optuna_by_draw: dict[int, list[int | None]] = {}
    if args.target_budget and not args.no_optuna:
        for off in (offsets if args.optuna_per_draw else offsets[:1]):
            optuna_by_draw[off] = optuna_hits_of(seeds, off, args.target_budget, args.epochs, targets,
                                                 args.workers)
            say(f"plain Optuna, draw {off}: {sum(h is not None for h in optuna_by_draw[off])}/{len(seeds)} reached")
    draws = []
    for off in offsets:
        optuna_hits = optuna_by_draw.get(off, optuna_by_draw.get(offsets[0]))
        check, target = summarize([r for r in runs if r["search_seed_offset"] == off], variants, args.budget,
                                  args.target_budget, optuna_hits)
        draws.append({"search_seed_offset": off, "check": check, "target": target})
    result = {
        "benchmark": "search_replay",
        "date": time.strftime("%Y-%m-%d"),
        "config": {"seeds": seeds, "search_seed_offset": args.search_seed_offset, "draws": args.draws,
                   "ties": args.ties, "asha": asha, "target": args.target,
                   "optuna_per_draw": args.optuna_per_draw,
                   "budget": args.budget, "target_budget": args.target_budget, "epochs": args.epochs,
                   "concurrency": CONCURRENCY,
                   "variants": {v: {**VARIANTS[v], "early_stopping": rule_of(v, asha)} for v in variants},
                   "grid_points": args.grid_points, "tolerance": TOLERANCE, "quick": args.quick},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "grid": own_grid,
        **({"region": regions} if regions else {}),
        "runs": runs,
        "check": draws[0]["check"],
        "target": draws[0]["target"],
        "draws": draws,
        "over_draws": over_draws(draws),
        **({"landscapes": landscapes(runs, variants, args.budget, args.target_budget, offsets,
                                     optuna_by_draw if args.optuna_per_draw and optuna_by_draw else None)}
           if args.draws > 1 else {}),
        "seconds": round(time.monotonic() - t0, 1),
    }
    result["table"] = render(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(result["table"])
    say(f"results in {args.out} ({result['seconds']} s, {cache.new} new curves trained)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
