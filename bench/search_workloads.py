"""Search across workloads: anytime curves on each workload's dense-grid landscape
(``make bench-workloads`` or ``python -m bench.search_workloads``).

For each workload, every config of the standard space (lr from 1e-5 to 10, four optimizers, four
schedules) is trained once on a grid of learning rates (``per_decade`` points per decade) from
training seed 0, and kept in ``bench/results/landscapes/<workload>.json``: the landscape. A search
is then replayed on it for many search seeds: every lr it asks for is answered with the curve of
the nearest grid lr (so the landscape is exact at the grid's resolution and flat between its
points), two slots training at the same speed as in ``bench.search_replay`` (whose ``replay``
runs lrsearch's own strategy and early-stopping objects here).

Compared, at the same trial budget, on the same landscapes and the same seeds:

* lrsearch's strategies as a user writes the job: ``random``, ``bayesian``, ``bayesian`` + ASHA
  (``{"kind": "asha"}``, the service's defaults) and ``auto`` (its own default early stopping);
* plain Optuna as a user writes it: multivariate TPE + HyperbandPruner, trials one after another;
* Ray Tune as a user writes it: ``OptunaSearch`` + ``ASHAScheduler`` with their defaults, two
  trials at a time, its searcher and scheduler asked and told as Tune's controller does (each
  result reported, a stopped trial's last result given to the searcher).

For each run the **anytime curve**: the best val_loss any trial has reported so far (a stopped
trial's included, as ``GET /jobs/{id}/best`` ranks them) against the epochs (a step job: steps)
trained so far, divided by the landscape's best (the region target of ``bench.search_efficiency``
is the same on a landscape that is flat within a grid cell). Reported per workload: the median and
quartiles over the seeds, drawn as SVG in ``docs/search-workloads/``; a table at 25%, 50% and
100% of plain Optuna's median epochs, and the epochs each variant needs to reach plain Optuna's
final median, as a share of plain Optuna's.

Results: a table on stdout and ``bench/results/search_workloads.json``. ``--quick`` is a smoke run
(coarse grids, 3 seeds, 12 trials) that writes to the temp dir.
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
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.search_efficiency import (
    LR_HIGH,
    LR_LOW,
    OPTIMIZERS,
    SCHEDULES,
    batch_epochs,
    range_test_points,
    say,
    standard_space,
    untrained_val_loss,
)
from bench.search_efficiency import train_curve as efficiency_curve
from bench.search_replay import CONCURRENCY, Curve, Points, _whole, improve, replay

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
LANDSCAPES_DIR = RESULTS / "landscapes"
PLOTS_DIR = REPO / "docs" / "search-workloads"
DEFAULT_OUT = RESULTS / "search_workloads.json"
OPTUNA, TUNE = "optuna", "tune"
FRACTIONS = (0.25, 0.5, 1.0)  # of plain Optuna's median epochs, where the table reads the curves
REACH_LINE = 0.7  # the line: plain Optuna's final median in at most this share of its epochs
CURVE_POINTS = 120  # x positions the medians are taken at (and drawn)


@dataclass(frozen=True)
class LandscapeSpec:
    """One workload's landscape: how its trials train, and how fine the lr grid is."""

    workload: str
    epochs: int | None = None  # an epoch job's epochs
    steps: int | None = None  # a step job's steps, evaluated every eval_every
    eval_every: int | None = None
    per_decade: int = 10  # grid lrs per decade of the standard space's lr range
    training_seed: int = 0

    @property
    def rounds(self) -> int:
        """Evaluations per full trial: the replay's clock."""
        if self.epochs is not None:
            return self.epochs
        assert self.steps is not None and self.eval_every is not None
        return -(-self.steps // self.eval_every)

    @property
    def unit(self) -> str:
        return "epochs" if self.epochs is not None else "steps"

    @property
    def per_round(self) -> int:
        """Units (epochs or steps) one round trains."""
        return 1 if self.eval_every is None else self.eval_every

    @property
    def steps_between(self) -> int:
        """Grid intervals over the lr range (one fewer than its lrs)."""
        return round(math.log10(LR_HIGH / LR_LOW) * self.per_decade)

    def lrs(self) -> list[float]:
        decades, n = math.log10(LR_HIGH / LR_LOW), self.steps_between
        return [LR_LOW * 10 ** (decades * i / n) for i in range(n + 1)]


# The benchmark's workloads. gpt-stdlib is a step job (the transformer of bench/gpt_stdlib.py) on a
# coarser grid and a shorter run than that benchmark's 300 steps: its 496 trainings cost about as
# much as the other three landscapes' 2,928 together.
LANDSCAPES: dict[str, LandscapeSpec] = {
    "mlp-digits": LandscapeSpec("mlp-digits", epochs=10),
    "cnn-digits": LandscapeSpec("cnn-digits", epochs=10),
    "logreg-breast-cancer": LandscapeSpec("logreg-breast-cancer", epochs=10),
    "gpt-stdlib": LandscapeSpec("gpt-stdlib", steps=120, eval_every=20, per_decade=5),
}


EXTRA: dict[str, dict[str, Any]] = {}  # --extra variants, by name


def variants() -> dict[str, dict[str, Any]]:
    """lrsearch's strategies as a user writes the job; ``auto`` with the early stopping it defaults to
    (and any --extra)."""
    from lrsearch.search.strategies import STRATEGIES

    auto_stop = STRATEGIES["auto"].default_early_stopping
    return {
        "random": {"strategy": "random", "early_stopping": None},
        "bayesian": {"strategy": "bayesian", "early_stopping": None},
        "bayesian+asha": {"strategy": "bayesian", "early_stopping": {"kind": "asha"}},
        "auto": {"strategy": "auto",
                 "early_stopping": None if auto_stop is None else auto_stop.model_dump(exclude_none=True)},
        **EXTRA,
    }


# -- the landscape ------------------------------------------------------------------------------------
def train_curve(spec: LandscapeSpec, config: dict[str, Any]) -> Curve:
    """Every round's val_loss (None where not finite) of one full training, and whether it diverged."""
    return efficiency_curve(config, spec.epochs, spec.training_seed, spec.workload, spec.steps, spec.eval_every)


def _train_one(args: tuple[LandscapeSpec, dict[str, Any]]) -> Curve:
    return train_curve(*args)


def _untrained_and_step(spec: LandscapeSpec) -> tuple[float, float]:
    """The untrained model's val_loss, and what one range-test step costs in rounds (a step job's
    round is eval_every steps; an epoch is a pass over the training set)."""
    step = 1 / spec.eval_every if spec.eval_every is not None else batch_epochs(spec.workload)
    return untrained_val_loss(spec.training_seed, spec.workload), step


def grid_configs(spec: LandscapeSpec) -> list[dict[str, Any]]:
    """Every grid config, completed as the strategies complete theirs (the schedule's defaults)."""
    from lrsearch.search.catalog import complete_config

    length = spec.epochs if spec.epochs is not None else spec.steps
    assert length is not None
    return [complete_config({"lr": lr, "optimizer": o, "schedule": s}, length)
            for o in OPTIMIZERS for s in SCHEDULES for lr in spec.lrs()]


def range_test_configs(spec: LandscapeSpec, budget: int) -> list[dict[str, Any]]:
    """The range tests ``auto`` runs before it searches (the same for every search seed)."""
    from lrsearch.search.space import parse_space
    from lrsearch.search.strategies import STRATEGIES, StrategySpec, is_range_test

    strategy = STRATEGIES["auto"](StrategySpec(space=parse_space(standard_space()), seed=0, max_trials=budget,
                                               epochs=spec.rounds * spec.per_round,
                                               eval_every=spec.eval_every))
    out = []
    while isinstance(config := strategy.suggest(), dict) and is_range_test(config):
        out.append(config)
    return out


@dataclass
class Landscape:
    """A workload's dense grid, answering a replay's trainings (``bench.search_replay.CurveSource``)."""

    spec: LandscapeSpec
    curves: dict[str, list[Curve]]  # "optimizer/schedule" -> a curve per grid lr
    untrained: float
    step_rounds: float  # a range-test step, in rounds
    range_tests: dict[str, Points] = field(default_factory=dict)  # by config_key
    seconds: float = 0.0

    def _index(self, lr: float) -> int:
        i = round(math.log10(lr / LR_LOW) * self.spec.per_decade)
        return min(max(i, 0), self.spec.steps_between)

    def get(self, config: dict[str, Any], seed: int, epochs: int) -> Curve:
        return self.curves[f"{config['optimizer']}/{config['schedule']}"][self._index(float(config["lr"]))]

    def range_test(self, config: dict[str, Any], seed: int) -> Points:
        from lrsearch.search.strategies import config_key

        key = config_key(config)
        if key not in self.range_tests:  # not precomputed (another budget): run it here
            self.range_tests[key] = range_test_points(config, self.spec.training_seed, self.spec.workload)
        return self.range_tests[key]

    def untrained_val_loss(self, seed: int) -> float:
        return self.untrained

    def range_test_step(self) -> float:
        return self.step_rounds

    def best(self) -> float:
        """The lowest val_loss of any grid training: the target the curves are divided by."""
        return min(v for curves in self.curves.values() for curve, _ in curves for v in curve if v is not None)

    def best_config(self) -> dict[str, Any]:
        target = self.best()
        lrs = self.spec.lrs()
        for name, curves in self.curves.items():
            for i, (curve, _) in enumerate(curves):
                if target in curve:
                    optimizer, schedule = name.split("/")
                    return {"lr": float(f"{lrs[i]:.4g}"), "optimizer": optimizer, "schedule": schedule}
        raise AssertionError("unreachable")

    def to_json(self) -> dict[str, Any]:
        return {"spec": asdict(self.spec), "untrained": self.untrained, "step_rounds": self.step_rounds,
                "seconds": self.seconds, "lrs": self.spec.lrs(),
                "curves": {k: [[c, d] for c, d in v] for k, v in self.curves.items()},
                "range_tests": {k: [list(p) for p in v] for k, v in self.range_tests.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Landscape:
        return cls(spec=LandscapeSpec(**data["spec"]), untrained=data["untrained"], step_rounds=data["step_rounds"],
                   seconds=data.get("seconds", 0.0),
                   curves={k: [(list(c), bool(d)) for c, d in v] for k, v in data["curves"].items()},
                   range_tests={k: [(a, b) for a, b in v] for k, v in data["range_tests"].items()})


def landscape_path(spec: LandscapeSpec, directory: Path) -> Path:
    return directory / f"{spec.workload}.json"


def load_or_build(spec: LandscapeSpec, directory: Path, budget: int, workers: int) -> Landscape:
    """The landscape from its file when that was built with this spec, else trained now and saved."""
    from lrsearch.search.strategies import config_key

    path = landscape_path(spec, directory)
    trained_now = False
    try:
        landscape = Landscape.from_json(json.loads(path.read_text()))
        if landscape.spec != spec:
            raise ValueError("another spec")
    except (OSError, ValueError, KeyError):
        trained_now = True
        configs = grid_configs(spec)
        say(f"{spec.workload}: training the grid, {len(configs)} configs x {spec.rounds} rounds")
        started = time.monotonic()
        if workers == 1:
            trained = [train_curve(spec, c) for c in configs]
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                trained = list(pool.map(_train_one, [(spec, c) for c in configs], chunksize=4))
        per = len(spec.lrs())
        curves = {f"{o}/{s}": trained[(i * len(SCHEDULES) + j) * per:(i * len(SCHEDULES) + j + 1) * per]
                  for i, o in enumerate(OPTIMIZERS) for j, s in enumerate(SCHEDULES)}
        untrained, step = _untrained_and_step(spec)
        landscape = Landscape(spec, curves, untrained, step, seconds=round(time.monotonic() - started, 1))
    missing = [c for c in range_test_configs(spec, budget) if config_key(c) not in landscape.range_tests]
    for config in missing:
        landscape.range_tests[config_key(config)] = range_test_points(config, spec.training_seed, spec.workload)
    if missing or trained_now:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(landscape.to_json(), separators=(",", ":")) + "\n")
        say(f"{spec.workload}: landscape in {path} (grid trained in {landscape.seconds} s)")
    return landscape


# -- the searches -------------------------------------------------------------------------------------
Trace = list[tuple[float, float]]  # (rounds trained, best so far) each time the best fell


def run_lrsearch(landscape: Landscape, how: dict[str, Any], seed: int, budget: int) -> dict[str, Any]:
    spec = landscape.spec
    rule = how.get("early_stopping")
    if spec.eval_every is not None and rule is not None and "grace_epochs" in rule:
        # A variant's grace counts evaluations on every workload: a step job states it in steps.
        rest = {k: v for k, v in rule.items() if k != "grace_epochs"}
        how = {**how, "early_stopping": {**rest, "grace_steps": rule["grace_epochs"] * spec.eval_every}}
    run = replay("custom", spec.training_seed, budget, spec.rounds, landscape, search_seed=seed, how=how,
                 eval_every=spec.eval_every)
    return {"rounds": run["epochs"], "best": run["best_val_loss"], "trace": run["trace"]}


def run_plain_optuna(landscape: Landscape, seed: int, budget: int) -> dict[str, Any]:
    """Multivariate TPE + HyperbandPruner, one trial after another, as bench.search_efficiency's script."""
    import warnings

    import optuna
    from optuna.exceptions import ExperimentalWarning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    rounds = landscape.spec.rounds
    trained = 0
    trace: Trace = []

    def objective(trial: optuna.Trial) -> float:
        nonlocal trained
        config = {"optimizer": trial.suggest_categorical("optimizer", OPTIMIZERS),
                  "schedule": trial.suggest_categorical("schedule", SCHEDULES),
                  "lr": trial.suggest_float("lr", LR_LOW, LR_HIGH, log=True)}
        curve, _ = landscape.get(config, 0, rounds)
        best = math.inf
        for i, value in enumerate(curve):
            trained += 1
            if value is None:  # diverged: the loop stops, the trial counts as pruned
                raise optuna.TrialPruned()
            best = min(best, value)
            improve(trace, trained, value)
            trial.report(value, i + 1)
            if i + 1 < len(curve) and trial.should_prune():
                raise optuna.TrialPruned()
        return best

    study = optuna.create_study(study_name=f"plain-optuna-{seed}", direction="minimize",
                                sampler=optuna.samplers.TPESampler(multivariate=True, seed=seed),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=rounds,
                                                                      reduction_factor=3))
    study.optimize(objective, n_trials=budget)
    return {"rounds": trained, "best": trace[-1][1] if trace else None, "trace": trace}


def run_ray_tune(landscape: Landscape, seed: int, budget: int, concurrency: int = CONCURRENCY) -> dict[str, Any]:
    """OptunaSearch + ASHAScheduler with their defaults, ``CONCURRENCY`` trials at a time (Tune's
    default on two CPUs), asked and told as Tune's controller does: every result goes to the
    searcher and the scheduler; a trial the scheduler stops, or that ends, gives the searcher its
    last result. A trial whose loss is not finite ends without reporting it (a user's loop that
    checks ``math.isfinite``)."""
    import logging
    from types import SimpleNamespace

    import numpy as np
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler
    from ray.tune.search.optuna import OptunaSearch

    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    np.random.seed(seed)  # ASHA draws the bracket from numpy's global RNG (one bracket by default)
    rounds = landscape.spec.rounds
    space = {"lr": tune.loguniform(LR_LOW, LR_HIGH), "optimizer": tune.choice(OPTIMIZERS),
             "schedule": tune.choice(SCHEDULES)}
    searcher = OptunaSearch(space=space, metric="val_loss", mode="min", seed=seed)
    scheduler = ASHAScheduler(metric="val_loss", mode="min", max_t=rounds, time_attr="training_iteration")
    running: list[dict[str, Any]] = []
    started = trained = unreported = 0
    now = 0
    trace: Trace = []

    def fill() -> None:
        nonlocal started
        while len(running) < concurrency and started < budget:
            trial = SimpleNamespace(trial_id=f"trial_{started:05d}")
            config = searcher.suggest(trial.trial_id)
            scheduler.on_trial_add(None, trial)  # type: ignore[arg-type]  # the controller is not read
            curve, _ = landscape.get(config, 0, rounds)
            running.append({"trial": trial, "number": started, "curve": curve, "done": 0, "next_at": now + 1,
                            "last": None})
            started += 1

    def end(t: dict[str, Any]) -> None:
        running.remove(t)
        if t["last"] is not None:
            scheduler.on_trial_complete(None, t["trial"], t["last"])  # type: ignore[arg-type]
        else:
            scheduler.on_trial_remove(None, t["trial"])  # type: ignore[arg-type]
        searcher.on_trial_complete(t["trial"].trial_id, result=t["last"])
        fill()

    fill()
    while running:
        t = min(running, key=lambda r: (r["next_at"], r["number"]))
        now = t["next_at"]
        value = t["curve"][t["done"]]
        t["done"] += 1
        t["next_at"] = now + 1
        trained += 1
        if value is None:
            unreported += 1
            end(t)
            continue
        improve(trace, trained, value)
        result = {"val_loss": value, "training_iteration": t["done"]}
        t["last"] = result
        searcher.on_trial_result(t["trial"].trial_id, result)
        action = scheduler.on_trial_result(None, t["trial"], result)  # type: ignore[arg-type]
        if action == TrialScheduler.STOP or t["done"] >= len(t["curve"]):
            end(t)
    # unreported: rounds trained whose loss was not finite (a real Tuner records no result for them)
    return {"rounds": trained, "best": trace[-1][1] if trace else None, "trace": trace, "unreported": unreported}


def run_real_tuner(landscape: Landscape, seed: int, budget: int) -> dict[str, Any]:
    """The same search through a real ``tune.Tuner`` on a local Ray (started and stopped here), one
    trial at a time (a ConcurrencyLimiter of 1): the check that ``run_ray_tune`` drives Tune's objects
    as Tune does. With one trial at a time both are deterministic, so the epochs and the best agree."""
    import tempfile

    import numpy as np
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    rounds = landscape.spec.rounds

    def trainable(config: dict[str, Any]) -> None:
        curve, _ = landscape.get(config, 0, rounds)
        for value in curve:
            if value is None:  # as run_ray_tune: a loss that is not finite ends the trial unreported
                return
            tune.report({"val_loss": value})

    space = {"lr": tune.loguniform(LR_LOW, LR_HIGH), "optimizer": tune.choice(OPTIMIZERS),
             "schedule": tune.choice(SCHEDULES)}
    np.random.seed(seed)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as storage:
            results = tune.Tuner(trainable, param_space=space, tune_config=tune.TuneConfig(
                metric="val_loss", mode="min", num_samples=budget,
                search_alg=ConcurrencyLimiter(OptunaSearch(seed=seed), max_concurrent=1),
                scheduler=ASHAScheduler(max_t=rounds)),
                run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
            reported = [r.metrics_dataframe["val_loss"].tolist() for r in results if r.metrics_dataframe is not None]
    finally:
        ray.shutdown()
    return {"reported_rounds": sum(len(v) for v in reported), "best": min(min(v) for v in reported if v)}


Task = tuple[str, str, int, int]  # workload, variant, seed, budget


def run_task(task: Task, directory: Path) -> dict[str, Any]:
    workload, variant, seed, budget = task
    landscape = _landscape_in_process(workload, directory)
    started = time.monotonic()
    if variant == OPTUNA:
        run = run_plain_optuna(landscape, seed, budget)
    elif variant == TUNE:
        run = run_ray_tune(landscape, seed, budget)
    else:
        run = run_lrsearch(landscape, variants()[variant], seed, budget)
    return {"workload": workload, "variant": variant, "seed": seed, "budget": budget, **run,
            "seconds": round(time.monotonic() - started, 2)}


_PROCESS_LANDSCAPES: dict[str, Landscape] = {}


def _landscape_in_process(workload: str, directory: Path) -> Landscape:
    if workload not in _PROCESS_LANDSCAPES:
        spec = _SPECS_IN_PROCESS.get(workload, LANDSCAPES.get(workload))
        assert spec is not None
        _PROCESS_LANDSCAPES[workload] = Landscape.from_json(json.loads(landscape_path(spec, directory).read_text()))
    return _PROCESS_LANDSCAPES[workload]


_SPECS_IN_PROCESS: dict[str, LandscapeSpec] = {}


def _run_tasks(tasks: Sequence[Task], directory: Path, specs: dict[str, LandscapeSpec],
               extra: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    _SPECS_IN_PROCESS.update(specs)
    EXTRA.update(extra or {})
    out = []
    for i, task in enumerate(tasks, 1):
        out.append(run_task(task, directory))
        if i % 40 == 0 or i == len(tasks):
            say(f"worker {os.getpid()}: {i}/{len(tasks)} searches")
    return out


# -- the anytime curves ---------------------------------------------------------------------------------
def best_at(trace: Sequence[Sequence[float]], x: float) -> float:
    """The best so far after ``x`` rounds (inf before the first report)."""
    best = math.inf
    for trained, value in trace:
        if trained > x:
            break
        best = value
    return best


def quartiles(xs: Iterable[float]) -> tuple[float, float, float]:
    """Lower quartile, median, upper quartile (inf counts as the largest value)."""
    s = sorted(xs)
    if len(s) == 1:
        return s[0], s[0], s[0]
    q = statistics.quantiles(s, n=4, method="inclusive") if all(math.isfinite(v) for v in s) else None
    if q is not None:
        return q[0], q[1], q[2]
    def at(p: float) -> float:
        return s[min(len(s) - 1, round(p * (len(s) - 1)))]
    return at(0.25), at(0.5), at(0.75)


def median_difference_interval(a: Sequence[float], b: Sequence[float], draws: int = 1000,
                               seed: int = 0) -> tuple[float, float]:
    """A 90% bootstrap interval of median(a) - median(b), the seeds of each drawn again with
    replacement: how far apart the two medians could be by the draw of seeds alone."""
    import random

    rng = random.Random(seed)
    diffs = []
    for _ in range(draws):
        ma = quartiles(rng.choices(a, k=len(a)))[1]
        mb = quartiles(rng.choices(b, k=len(b)))[1]
        diffs.append(ma - mb if math.isfinite(ma) and math.isfinite(mb) else (math.inf if ma > mb else -math.inf))
    diffs.sort()
    return diffs[int(0.05 * draws)], diffs[int(0.95 * draws) - 1]


def first_reach(xs: Sequence[float], medians: Sequence[float], level: float) -> float | None:
    """The first x at which the median curve is at or below ``level`` (None: never)."""
    return next((x for x, m in zip(xs, medians) if m <= level * (1 + 1e-12)), None)


def summarize(runs: list[dict[str, Any]], landscape: Landscape, names: Sequence[str]) -> dict[str, Any]:
    """One workload's curves (median and quartiles of best so far / landscape best) and its table."""
    target = landscape.best()
    per = landscape.spec.per_round
    by = {v: [r for r in runs if r["variant"] == v] for v in names}
    top = max(r["rounds"] for r in runs)
    xs = [top * i / (CURVE_POINTS - 1) for i in range(CURVE_POINTS)]
    curves = {}
    for v, rs in by.items():
        qs = [quartiles(best_at(r["trace"], x) / target for r in rs) for x in xs]
        curves[v] = {"q1": [q[0] for q in qs], "median": [q[1] for q in qs], "q3": [q[2] for q in qs]}
    optuna_rounds = statistics.median(r["rounds"] for r in by[OPTUNA])
    optuna_final = quartiles(r["best"] / target for r in by[OPTUNA])[1]
    optuna_at = {f: [best_at(r["trace"], f * optuna_rounds) / target for r in by[OPTUNA]] for f in FRACTIONS}
    table = {}
    for v, rs in by.items():
        row: dict[str, Any] = {"median_units": statistics.median(r["rounds"] for r in rs) * per}
        for f in FRACTIONS:
            values = [best_at(r["trace"], f * optuna_rounds) / target for r in rs]
            q1, m, q3 = quartiles(values)
            row[f"at_{f:g}"] = {"q1": q1, "median": m, "q3": q3,
                                "minus_optuna_90pct": median_difference_interval(values, optuna_at[f])}
        final = quartiles(r["best"] / target for r in rs)
        row["final"] = {"q1": final[0], "median": final[1], "q3": final[2]}
        # Fine steps for the reach: the first round at which the median falls to plain Optuna's final.
        steps = [top * i / 1000 for i in range(1001)]
        meds = [quartiles(best_at(r["trace"], x) / target for r in rs)[1] for x in steps]
        reach = first_reach(steps, meds, optuna_final)
        row["reach_optuna_final"] = None if reach is None else reach / optuna_rounds
        table[v] = row
    return {"target": target, "target_config": landscape.best_config(), "unit": landscape.spec.unit,
            "optuna_median_units": optuna_rounds * per, "optuna_final_median": optuna_final,
            "xs": [x * per for x in xs], "curves": curves, "table": table}


def verdicts(summary: dict[str, Any], recommended: str) -> dict[str, Any]:
    """The issue's lines on one workload: the recommended strategy against plain Optuna at 25%, 50% and
    100% of its epochs and in reaching its final median; auto against bayesian + ASHA."""
    table = summary["table"]
    rec, opt = table[recommended], table[OPTUNA]
    out: dict[str, Any] = {f"at_{f:g}": rec[f"at_{f:g}"]["median"] <= opt[f"at_{f:g}"]["median"] for f in FRACTIONS}
    out["reach_within_0.7x"] = rec["reach_optuna_final"] is not None and rec["reach_optuna_final"] <= REACH_LINE
    if "auto" in table and "bayesian+asha" in table:
        # At equal epochs: where auto's median is above bayesian+asha's by more than the seeds'
        # spread there (bayesian+asha's interquartile range).
        a, b = summary["curves"]["auto"], summary["curves"]["bayesian+asha"]
        worse = [x for x, am, bm, bq1, bq3 in zip(summary["xs"], a["median"], b["median"], b["q1"], b["q3"])
                 if math.isfinite(bm) and am - bm > bq3 - bq1]
        out["auto_worse_than_bayesian_asha_beyond_spread_at"] = worse
    return out


# -- drawing -------------------------------------------------------------------------------------------
COLOURS = {"random": "#9aa5b1", "bayesian": "#0ea5e9", "bayesian+asha": "#16a34a", "auto": "#4f46e5",
           OPTUNA: "#f59e0b", TUNE: "#dc2626"}
OTHER_COLOURS = ["#111827", "#a21caf", "#0f766e", "#854d0e"]  # --extra variants
LABELS = {OPTUNA: "plain Optuna (TPE + Hyperband)", TUNE: "Ray Tune (OptunaSearch + ASHA)"}


def svg(workload: str, summary: dict[str, Any], seeds: int, budget: int) -> str:
    """The medians (lines) and quartiles (bands) of one workload, as a standalone SVG."""
    w, h, left, right, top, bottom = 820, 440, 70, 270, 40, 50
    xs = summary["xs"]
    xmax = xs[-1] or 1.0
    # Up to the worst finite median at a quarter of plain Optuna's epochs: what comes after is the story.
    quarter = min(range(len(xs)), key=lambda i: abs(xs[i] - summary["optuna_median_units"] / 4))
    early = [c["median"][quarter] for c in summary["curves"].values() if math.isfinite(c["median"][quarter])]
    ymin, ymax = 1.0, min(max(max(early, default=2.0), 1.02), 2.0)

    def px(x: float) -> float:
        return left + (w - left - right) * x / xmax

    def py(y: float) -> float:
        y = min(max(y, ymin), ymax)
        return top + (h - top - bottom) * (1 - (y - ymin) / (ymax - ymin))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
             f'font-size="12"><rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{left}" y="22" font-size="14">{workload}: best val_loss so far / landscape best '
             f'(median, quartiles; {seeds} seeds, {budget} trials)</text>']
    digits = 3 if ymax - ymin < 0.1 else 2
    for i in range(6):
        y = ymin + (ymax - ymin) * i / 5
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 8}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.{digits}f}</text>')
    for i in range(6):
        x = xmax * i / 5
        parts.append(f'<text x="{px(x):.1f}" y="{h - bottom + 18}" text-anchor="middle">{x:.0f}</text>')
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 10}" text-anchor="middle">'
                 f'{summary["unit"]} trained</text>')
    optuna_x = summary["optuna_median_units"]
    parts.append(f'<line x1="{px(optuna_x):.1f}" x2="{px(optuna_x):.1f}" y1="{top}" y2="{h - bottom}" '
                 f'stroke="{COLOURS[OPTUNA]}" stroke-dasharray="4 4"/>')
    for k, (v, c) in enumerate(summary["curves"].items()):
        colour = COLOURS.get(v, OTHER_COLOURS[k % len(OTHER_COLOURS)])
        band = [(px(x), py(q)) for x, q in zip(xs, c["q3"]) if math.isfinite(q)]
        band += [(px(x), py(q)) for x, q in reversed(list(zip(xs, c["q1"]))) if math.isfinite(q)]
        if band:
            parts.append(f'<polygon points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in band)}" fill="{colour}" '
                         'fill-opacity="0.12" stroke="none"/>')
        line = [(px(x), py(m)) for x, m in zip(xs, c["median"]) if math.isfinite(m)]
        if line:
            parts.append(f'<polyline points="{" ".join(f"{a:.1f},{b:.1f}" for a, b in line)}" fill="none" '
                         f'stroke="{colour}" stroke-width="2"/>')
        ly = top + 10 + 20 * k
        parts.append(f'<line x1="{w - right + 15}" x2="{w - right + 40}" y1="{ly}" y2="{ly}" stroke="{colour}" '
                     f'stroke-width="3"/><text x="{w - right + 46}" y="{ly + 4}">{LABELS.get(v, v)}</text>')
    parts.append(f'<text x="{w - right + 15}" y="{top + 10 + 20 * len(summary["curves"]) + 10}" fill="#666">'
                 'dashed: plain Optuna\'s median</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _against(cell: dict[str, Any], variant: str) -> str:
    """`` <`` or `` >`` where a median is below or above plain Optuna's beyond the draw of seeds (the
    bootstrap interval of the difference leaves out 0), `` =`` where it is within it."""
    if variant == OPTUNA or "minus_optuna_90pct" not in cell:
        return ""
    lo, hi = cell["minus_optuna_90pct"]
    return " <" if hi < 0 else " >" if lo > 0 else " ="


def render(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = [f"Anytime search on each workload's landscape: {len(cfg['seeds'])} search seeds, {cfg['budget']} trials, "
             f"{CONCURRENCY} slots at the same speed (plain Optuna: one). Best so far / the landscape's best, median "
             "(quartiles), at 25%, 50% and 100% of plain Optuna's median epochs (steps), and the epochs to reach "
             "plain Optuna's final median as a share of its epochs. `<` / `>`: below / above plain Optuna's median "
             "beyond the draw of seeds (a 90% bootstrap interval of the difference leaves out 0); `=`: within it.",
             ""]
    for workload, s in result["workloads"].items():
        ls = result["landscapes"][workload]
        lines += [f"**{workload}** ({ls['rounds']} {'epochs' if s['unit'] == 'epochs' else 'evaluations'} per trial"
                  f"{'' if s['unit'] == 'epochs' else ' of ' + str(ls['per_round']) + ' steps'}; grid of "
                  f"{ls['configs']} configs, {ls['per_decade']} lrs per decade; best {s['target']:.4f} at "
                  f"{s['target_config']}; plain Optuna's median {s['optuna_median_units']:.0f} {s['unit']}):", "",
                  f"| variant | {s['unit']} (median) | at 25% | at 50% | at 100% | final | to plain Optuna's final |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for v, row in s["table"].items():
            cells = [f"{row[k]['median']:.3f} ({row[k]['q1']:.3f}-{row[k]['q3']:.3f}){_against(row[k], v)}"
                     for k in [f"at_{f:g}" for f in FRACTIONS] + ["final"]]
            reach = row["reach_optuna_final"]
            lines.append(f"| {LABELS.get(v, v)} | {row['median_units']:.0f} | {' | '.join(cells)} | "
                         f"{'never' if reach is None else f'{reach:.2f}x'} |")
        lines.append("")
    rec = cfg["recommended"]
    lines.append(f"Lines for `{rec}` (the recommended strategy) against plain Optuna, per workload:")
    lines.append("")
    lines.append("| workload | at 25% | at 50% | at 100% | reaches plain Optuna's final in <= 0.7x | "
                 "auto above bayesian+asha by more than the spread at |")
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for workload, v in result["verdicts"].items():
        worse = v.get("auto_worse_than_bayesian_asha_beyond_spread_at")
        where = "n/a" if worse is None else ("nowhere" if not worse else f"{len(worse)} of {CURVE_POINTS} x positions "
                                             f"({worse[0]:.0f}-{worse[-1]:.0f})")
        lines.append(f"| {workload} | {'yes' if v['at_0.25'] else 'no'} | {'yes' if v['at_0.5'] else 'no'} | "
                     f"{'yes' if v['at_1'] else 'no'} | {'yes' if v['reach_within_0.7x'] else 'no'} | {where} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.search_workloads", description=__doc__.split("\n")[0])
    p.add_argument("--workloads", default=",".join(LANDSCAPES), help=f"comma-separated subset of {list(LANDSCAPES)}")
    p.add_argument("--seeds", type=int, default=200, help="search seeds (default 200; the searches take seconds each)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="search seeds FIRST..FIRST+N-1: other seeds, to check a choice made on the first ones")
    p.add_argument("--budget", type=int, default=50, help="trials per search (default 50)")
    p.add_argument("--variants", default=None,
                   help="comma-separated subset of lrsearch's variants (default all: random, bayesian, "
                        "bayesian+asha, auto); plain Optuna and Ray Tune always run")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=JSON",
                   help="another variant: a name and its strategy, options and early stopping as JSON, e.g. "
                        'auto-g1=\'{"strategy": "auto", "early_stopping": {"kind": "asha", "grace_epochs": 1}}\'')
    p.add_argument("--recommended", default="auto", help="the strategy the lines are checked for (default auto)")
    p.add_argument("--workers", type=int, default=2, help="processes (grids and searches; default 2)")
    p.add_argument("--landscapes", type=Path, default=LANDSCAPES_DIR, help="where the landscapes are kept")
    p.add_argument("--plots", type=Path, default=PLOTS_DIR)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 2 lrs per decade, 4 epochs (steps 40), 3 seeds, 12 trials, in the temp dir")
    args = p.parse_args(argv)
    EXTRA.clear()  # this run's --extra only
    names = list(variants()) if args.variants is None else [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in names:
        if v not in variants():
            p.error(f"unknown variant {v!r}; one of {list(variants())}")
    for text in args.extra:
        name, _, how = text.partition("=")
        try:
            EXTRA[name.strip()] = {"options": {}, "early_stopping": None, **json.loads(how)}
        except ValueError as e:
            p.error(f"--extra {text!r}: expected NAME=JSON ({e})")
        names.append(name.strip())
    if args.recommended not in names:
        p.error(f"--recommended {args.recommended!r} is not among the variants run")
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in LANDSCAPES:
            p.error(f"unknown workload {w!r}; one of {list(LANDSCAPES)}")
    specs = dict(LANDSCAPES)
    if args.quick:  # the temp dir, where no path was given
        tmp = Path(tempfile.gettempdir()) / "lrsearch-search-workloads-quick"
        args.seeds, args.budget = 3, 12
        args.landscapes = tmp / "landscapes" if args.landscapes == LANDSCAPES_DIR else args.landscapes
        args.plots = tmp / "plots" if args.plots == PLOTS_DIR else args.plots
        args.out = tmp / "search_workloads.json" if args.out == DEFAULT_OUT else args.out
        specs = {w: LandscapeSpec(w, **({"epochs": 4} if s.epochs is not None else {"steps": 40, "eval_every": 10}),
                                  per_decade=2) for w, s in specs.items()}
    t0 = time.monotonic()
    landscapes = {w: load_or_build(specs[w], args.landscapes, args.budget, args.workers) for w in workloads}
    everyone = [*names, OPTUNA, TUNE]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    tasks: list[Task] = [(w, v, s, args.budget) for w in workloads for v in everyone for s in seeds]
    say(f"{len(tasks)} searches on {args.workers} workers")
    if args.workers == 1:
        runs = _run_tasks(tasks, args.landscapes, specs)
    else:
        import multiprocessing

        shares = [tasks[i::args.workers] for i in range(args.workers)]
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            parts = pool.starmap(_run_tasks, [(share, args.landscapes, specs, EXTRA) for share in shares])
        order = {t: i for i, t in enumerate(tasks)}
        runs = sorted((r for part in parts for r in part),
                      key=lambda r: order[(r["workload"], r["variant"], r["seed"], r["budget"])])
    summaries = {w: summarize([r for r in runs if r["workload"] == w], landscapes[w], everyone) for w in workloads}
    result: dict[str, Any] = {
        "benchmark": "search_workloads",
        "date": time.strftime("%Y-%m-%d"),
        "config": {"seeds": seeds, "budget": args.budget, "concurrency": CONCURRENCY,
                   "recommended": args.recommended, "variants": {v: variants()[v] for v in names},
                   "quick": args.quick},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "landscapes": {w: {**asdict(ls.spec), "rounds": ls.spec.rounds, "per_round": ls.spec.per_round,
                           "configs": sum(len(c) for c in ls.curves.values()), "grid_seconds": ls.seconds}
                       for w, ls in landscapes.items()},
        "workloads": summaries,
        "verdicts": {w: verdicts(s, args.recommended) for w, s in summaries.items()},
        "runs": runs,
    }
    result["table"] = render(result)
    result["seconds"] = round(time.monotonic() - t0, 1)
    args.plots.mkdir(parents=True, exist_ok=True)
    for w, s in summaries.items():
        (args.plots / f"{w}.svg").write_text(svg(w, s, args.seeds, args.budget))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # Compact: a run's trace is many short pairs (6 significant digits are the losses' own).
    for run in result["runs"]:
        run["trace"] = [[_whole(x), float(f"{v:.6g}")] for x, v in run["trace"]]
    args.out.write_text(json.dumps(result, separators=(",", ":")) + "\n")
    print(result["table"])
    say(f"results in {args.out}, plots in {args.plots} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
