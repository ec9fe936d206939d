"""Population-based training: lrsearch's ``pbt`` against Ray Tune's PopulationBasedTraining, and
against ``auto``'s best fixed schedule at the same epochs, side by side in one run
(``make bench-pbt`` or ``python -m bench.pbt``).

Every method trains ``mlp-digits`` (its model, its data as a TrialActor loads it, ``load_data(seed=0)``,
and lrsearch's ``sgd``: momentum 0.9, batch 64) on a local Ray with 2 CPUs, 2 trainings at a time:

1. lrsearch ``pbt`` through the service: the real app (``create_app``: SQLite and checkpoints in a
   temporary directory, a real RayExecutor with 2 CPUs) under FastAPI's TestClient; the JobSpec
   ``{"strategy": "pbt", "epochs": 12, "max_concurrent": 2, "space": {"lr": {"low": 1e-3, "high":
   0.5}, "optimizer": ["sgd"]}, "options": {"population": P, "interval": 3}}`` is POSTed and timed
   until the job has completed; its ``/best`` is read back. Its options are pbt's defaults: quantile
   0.25, resample_probability 0.25, factors 0.8 and 1.25.
2. Ray Tune's ``PopulationBasedTraining`` as its documentation writes it (a function trainable
   that saves ``{"model", "optimizer", "epoch"}`` with ``tune.report(..., checkpoint=...)`` every
   ``perturbation_interval`` epochs and resumes from ``tune.get_checkpoint()``, setting the
   optimizer's rate to the config's; ``reuse_actors=True``; asynchronous, the default): the same
   model and initialisation (``torch.manual_seed(seed)`` before ``build_model``, as lrsearch's
   trainer does), the same data and optimizer (built by ``lrsearch.workers.optimizers``), a
   seeded shuffle per epoch; ``perturbation_interval=3``, ``quantile_fraction=0.25``,
   ``resample_probability=0.25``, ``perturbation_factors=(1.25, 0.8)``, lr resampled from
   ``tune.loguniform(1e-3, 0.5)`` (lrsearch's ``{"low", "high"}`` is log-uniform too). Its first
   population is lrsearch's generation 0 of the same seed (``tune.grid_search`` over the rates the
   pbt strategy draws for it),
   so both start from the same rates and weights; ``stop={"training_iteration": 12}``. A
   non-finite val_loss is reported as 1e9 (Ray's PBT would rank a NaN anywhere). Timed around
   ``Tuner.fit()``. Asynchronous, a member exploits whoever is ahead at the time and may jump to a
   later epoch with its checkpoint, so it can train fewer than P x 12 epochs: they are counted
   (``--ray-synch`` runs Ray's synchronous mode instead, generations as lrsearch's).
3. lrsearch ``auto`` (a range test of ``sgd``, then bayesian + ASHA, its defaults) over the same lr
   range with the four fixed schedules (constant, step, exponential, cosine), given the epochs of
   the population (P x 12): ``max_trials`` is 1 + P x 12 / 4 (13 for P=4; ASHA let a trial of auto
   train 4-6 of its 12 epochs in trial runs; max_trials also sets auto's start-up trials, a
   quarter of them), and the job is cancelled as soon as its trials have stored P x 12 epochs (its
   range test, 100 batches, counts 4.5). Its best and end-of-run figures are read from its first
   P x 12 epochs only (``within_budget``: the cancellation comes a poll late, later when the
   machine is busy); the epochs it trained in all are reported too.

The objective is val_loss. "best" is the lowest val_loss of any evaluation of any trial (``/best``'s
rule; for Ray Tune every result its trials reported, collected by a Tune callback since a trial's
own result files lose the rows before a pause or an exploit); "end" is the lowest val_loss a member
(for auto: a trial that trained all 12 epochs) had at the end of the run, the model a population
hands over. Not timed: Ray's start-up, the service's start-up and a few tiny warm-up jobs before
the first timed one (the service's actors load the data, the service imports what auto's first job
needs), as on a service that has been up a while. Ray Tune's trials start their actors (torch
imported, data loaded) inside each ``fit()``: that is part of its time, as it is of a user's.

Results: a markdown table on stdout and bench/results/pbt.json (``--quick``: one seed, population
4, in the temporary directory).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

WORKLOAD = "mlp-digits"
LR_LOW, LR_HIGH = 1e-3, 0.5
EPOCHS = 12
INTERVAL = 3
CONCURRENCY = 2
NUM_CPUS = 2
QUANTILE = 0.25
RESAMPLE_PROBABILITY = 0.25
FACTORS = (1.25, 0.8)
SCHEDULES = ["constant", "step", "exponential", "cosine"]
# auto's max_trials is 1 + the budget / this (about the epochs a trial of auto trains on this space
# under ASHA, 4-6 in trial runs); the job is also cancelled once it has trained the budget.
AUTO_EPOCHS_PER_TRIAL = 4.0
DIVERGED = 1e9  # Ray Tune's report of a non-finite val_loss
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_OUT = RESULTS / "pbt.json"
LRSEARCH_PBT, RAY_PBT, AUTO = "lrsearch pbt", "Ray Tune PBT", "lrsearch auto"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) and x < DIVERGED else None


def lowest(values: Iterable[float | None]) -> float | None:
    return min((v for v in values if v is not None), default=None)


def space(schedules: Sequence[str] | None = None) -> dict[str, Any]:
    return {"lr": {"low": LR_LOW, "high": LR_HIGH}, "optimizer": ["sgd"],
            **({"schedule": list(schedules)} if schedules else {})}


# -- lrsearch through the service ------------------------------------------------------------------
class Service:
    """The real app on a SQLite file (and its checkpoints) in a temporary directory, a local Ray
    with 2 CPUs started by the app's own RayExecutor, over REST. Leaving stops the runner and
    shuts Ray down (the app's lifespan), and removes the directory."""

    def __enter__(self) -> Service:
        from fastapi.testclient import TestClient

        from lrsearch.service.app import create_app
        from lrsearch.service.config import Settings

        self._tmp = tempfile.TemporaryDirectory(prefix="lrsearch-bench-pbt-")
        root = Path(self._tmp.name)
        settings = Settings(database_url=f"sqlite:///{root / 'bench.db'}", num_cpus=NUM_CPUS, poll_interval=0.05,
                            data_dir=str(root / "data"))
        self.client = TestClient(create_app(settings))
        try:
            self.client.__enter__()
        except BaseException:
            import ray

            if ray.is_initialized():  # the app's start-up failed after it started Ray
                ray.shutdown()
            self._tmp.cleanup()
            raise
        try:
            health = self.client.get("/api/v1/healthz")
            health.raise_for_status()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        say(f"service up: {health.json()}")
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.client.__exit__(*exc)
        finally:
            self._tmp.cleanup()

    def run_job(self, spec: dict[str, Any], timeout: float, budget_epochs: float | None = None) -> dict[str, Any]:
        """Submit, wait until the job ends, then read its trials (each with its val_loss curve) and best.
        ``budget_epochs``: cancel the job once its trials have trained that many epochs (``trained``)."""
        c = self.client
        started = time.perf_counter()
        r = c.post("/api/v1/jobs", json=spec)
        if r.status_code != 201:
            raise RuntimeError(f"job rejected ({r.status_code}): {r.text}")
        job_id = r.json()["id"]
        cancelled_at = None
        while (job := c.get(f"/api/v1/jobs/{job_id}").json())["status"] not in ("completed", "cancelled", "failed"):
            if time.perf_counter() - started > timeout:
                c.post(f"/api/v1/jobs/{job_id}/cancel")
                raise TimeoutError(f"job {job_id} ({spec['name']}) not finished after {timeout} s")
            if budget_epochs is not None and cancelled_at is None:
                live = c.get(f"/api/v1/jobs/{job_id}/trials", params={"limit": 10000}).json()["items"]
                if trained(live) >= budget_epochs:
                    cancelled_at = trained(live)
                    c.post(f"/api/v1/jobs/{job_id}/cancel").raise_for_status()
            time.sleep(0.02)
        seconds = time.perf_counter() - started
        if job["status"] != "completed" and not (job["status"] == "cancelled" and cancelled_at is not None):
            raise RuntimeError(f"job {job_id} ({spec['name']}) ended {job['status']}: {job.get('error')}")
        trials = c.get(f"/api/v1/jobs/{job_id}/trials", params={"limit": 10000}).json()["items"]
        for t in trials:
            rows = c.get(f"/api/v1/jobs/{job_id}/trials/{t['number']}/metrics").json()["items"]
            t["curve"] = [_finite(m["val_loss"]) for m in rows]
        best = c.get(f"/api/v1/jobs/{job_id}/best").json()
        return {"job_id": job_id, "seconds": seconds, "trials": trials, "best": best, "status": job["status"],
                "cancelled_at_epochs": cancelled_at}


def trained(trials: Iterable[dict[str, Any]]) -> float:
    """Epochs a job's trials have trained so far (a training trial's epochs as stored; a range test
    that has started counts its batches as a share of an epoch)."""
    total = 0.0
    for t in trials:
        if t["kind"] != "range_test":
            total += t["epochs"]
        elif t.get("started_at"):
            total += _range_test_epochs(t["config"])
    return total


def warm_up_specs() -> list[dict[str, Any]]:
    """Tiny jobs run before the timed ones, untimed: the actors load the data and the service imports
    what a strategy's first job needs (optuna for auto), as on a service that has been up a while."""
    common = {"workload": WORKLOAD, "max_concurrent": CONCURRENCY, "space": space()}
    return [{"name": "warm-up-manual", "workload": WORKLOAD, "strategy": "manual", "epochs": 1,
             "max_concurrent": CONCURRENCY, "configs": [{"lr": 0.01}, {"lr": 0.02}]},
            {"name": "warm-up-auto", "strategy": "auto", "epochs": 2, "max_trials": 8, **common},
            {"name": "warm-up-pbt", "strategy": "pbt", "epochs": 2, "options": {"population": 2, "interval": 1},
             **common}]


def initial_population(seed: int, population: int, epochs: int, interval: int) -> list[float]:
    """The rates of a pbt job's generation 0, as lrsearch's strategy draws them for this seed."""
    from lrsearch.search.space import parse_space
    from lrsearch.search.strategies import make_strategy
    from lrsearch.search.strategies.base import StrategySpec

    strategy = make_strategy("pbt", StrategySpec(space=parse_space(space()), epochs=epochs, seed=seed,
                                                 options={"population": population, "interval": interval}))
    rates = []
    for _ in range(population):
        config = strategy.suggest()
        assert isinstance(config, dict)
        rates.append(float(config["lr"]))
    return rates


def pbt_spec(seed: int, population: int, epochs: int, interval: int) -> dict[str, Any]:
    return {"name": f"bench-pbt-p{population}-seed{seed}", "workload": WORKLOAD, "strategy": "pbt",
            "epochs": epochs, "max_concurrent": CONCURRENCY, "seed": seed, "space": space(),
            "options": {"population": population, "interval": interval}}


def auto_trials(budget_epochs: float) -> int:
    """auto's max_trials for a budget of epochs: its range test, then budget / the mean trial's epochs."""
    return 1 + max(1, round(budget_epochs / AUTO_EPOCHS_PER_TRIAL))


def auto_spec(seed: int, max_trials: int, epochs: int) -> dict[str, Any]:
    return {"name": f"bench-auto-{max_trials}-seed{seed}", "workload": WORKLOAD, "strategy": "auto",
            "epochs": epochs, "max_concurrent": CONCURRENCY, "seed": seed, "max_trials": max_trials,
            "space": space(SCHEDULES)}


@functools.cache
def _batch_share() -> float:
    """One batch of the workload as a share of an epoch."""
    from lrsearch.workers.registry import get_workload

    wl = get_workload(WORKLOAD)
    return wl.batch_size / len(wl.load_data(seed=0).train_x)


def _range_test_epochs(config: dict[str, Any]) -> float:
    """A range test's cost in epochs: its batches as a share of the training set's."""
    return int(config["range_test"]["num_steps"]) * _batch_share()


def _brief(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"lr": float(f"{config['lr']:.4g}"), "schedule": config.get("schedule")}
    if config.get("lr_points"):
        out["lr_points"] = [[int(e), float(f"{lr:.4g}")] for e, lr in config["lr_points"]]
    return out


def lrsearch_pbt(service: Service, seed: int, population: int, epochs: int, interval: int,
                 timeout: float) -> dict[str, Any]:
    out = service.run_job(pbt_spec(seed, population, epochs, interval), timeout)
    trials, best = out["trials"], out["best"]
    last = [t for t in trials if t["config"]["pbt"]["stop"] == epochs]  # each member's last segment
    first = sorted((t for t in trials if t["config"]["pbt"]["generation"] == 0), key=lambda t: t["number"])
    statuses: dict[str, int] = {}
    for t in trials:
        statuses[t["status"]] = statuses.get(t["status"], 0) + 1
    exploits = sum(1 for t in trials if t["config"]["pbt"].get("exploited") is not None)
    return {"method": LRSEARCH_PBT, "seed": seed, "population": population, "seconds": round(out["seconds"], 2),
            "best_val_loss": best["val_loss"], "end_val_loss": lowest(t["curve"][-1] if t["curve"] else None
                                                                       for t in last),
            "epochs_trained": sum(len(t["curve"]) for t in trials), "trials": len(trials), "statuses": statuses,
            "exploits": exploits, "best_config": _brief(best["config"]),
            "initial_lrs": [float(t["config"]["lr"]) for t in first], "job_id": out["job_id"]}


def lrsearch_auto(service: Service, seed: int, max_trials: int, epochs: int, population: int,
                  timeout: float) -> dict[str, Any]:
    budget = population * epochs
    out = service.run_job(auto_spec(seed, max_trials, epochs), timeout, budget_epochs=budget)
    trials, best = out["trials"], out["best"]
    trained_epochs = sum(len(t["curve"]) for t in trials if t["kind"] != "range_test")
    tests = sum(_range_test_epochs(t["config"]) for t in trials if t["kind"] == "range_test")
    statuses: dict[str, int] = {}
    for t in trials:
        statuses[t["status"]] = statuses.get(t["status"], 0) + 1
    counted = within_budget(trials, budget)
    whole = [curve[-1] for curve in counted["curves"].values() if len(curve) == epochs]
    return {"method": AUTO, "seed": seed, "budget_of": population, "max_trials": max_trials,
            "status": out["status"], "cancelled_at_epochs": out["cancelled_at_epochs"],
            "seconds": round(out["seconds"], 2), "best_val_loss": lowest(v for c in counted["curves"].values() for v in c),
            "end_val_loss": lowest(whole), "epochs_trained": round(trained_epochs + tests, 1),
            "epochs_counted": round(counted["epochs"], 1), "range_test_epochs": round(tests, 1),
            "job_best_val_loss": best["val_loss"], "trials": len(trials), "statuses": statuses,
            "best_config": _brief(best["config"]), "job_id": out["job_id"]}


def _ts(value: str | None) -> float:
    return datetime.fromisoformat(value).timestamp() if value else math.inf


def within_budget(trials: Sequence[dict[str, Any]], budget: float) -> dict[str, Any]:
    """The job's first ``budget`` epochs: each trial's curve cut where the job had trained that many.

    Rows of concurrent trials are put in the order they were produced as bench/search_efficiency.py
    does: the k-th of a trial's n rows is stamped at ``started_at + k/n * (finished_at - started_at)``
    (a range test's cost at its end). The cancellation that ends the job at the budget comes a poll
    late, later still when the service is busy; the epochs past the budget are not counted."""
    stamped = []
    for t in trials:
        start, end = _ts(t.get("started_at")), _ts(t.get("finished_at"))
        if t["kind"] == "range_test":
            stamped.append((end, t["number"], 0, _range_test_epochs(t["config"]), None, False))
            continue
        n = len(t["curve"])
        for k, v in enumerate(t["curve"], start=1):
            stamp = start + k / n * (end - start) if math.isfinite(start) and math.isfinite(end) else math.inf
            stamped.append((stamp, t["number"], k, 1.0, v, True))
    stamped.sort(key=lambda r: (r[0], r[1], r[2]))
    spent, curves = 0.0, {}
    for _, number, _, cost, value, training in stamped:
        if spent + cost > budget + 1e-9:
            break
        spent += cost
        if training:
            curves.setdefault(number, []).append(value)
    return {"epochs": spent, "curves": curves}


# -- Ray Tune's PopulationBasedTraining, as its documentation writes it -----------------------------
def ray_tune_trainable(config: dict[str, Any]) -> None:
    """A function trainable: one member, resumed from ``tune.get_checkpoint()`` after an exploit."""
    import torch
    from ray import tune
    from ray.tune import Checkpoint

    from lrsearch.workers.optimizers import build_optimizer
    from lrsearch.workers.workloads.digits import MLPDigits

    torch.set_num_threads(1)  # as a 1-CPU TrialActor
    workload = MLPDigits()
    data = workload.load_data(seed=0)  # the split every lrsearch trial trains on
    seed, epochs, interval = config["seed"], config["epochs"], config["checkpoint_interval"]
    torch.manual_seed(seed)  # the initialisation lrsearch's trainer gives every trial of a job of this seed
    model = workload.build_model(seed)
    optimizer = build_optimizer(model.parameters(), {"optimizer": "sgd", "lr": config["lr"]})
    loss_fn = workload.loss_fn()
    epoch = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as checkpoint_dir:
            state = torch.load(os.path.join(checkpoint_dir, "checkpoint.pt"))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        epoch = state["epoch"]
        for group in optimizer.param_groups:  # the (perturbed) rate of this config
            group["lr"] = config["lr"]
    n, batch = len(data.train_x), workload.batch_size
    while epoch < epochs:
        model.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 10_000 + epoch))
        for start in range(0, n, batch):
            index = order[start:start + batch]
            loss = loss_fn(model(data.train_x[index]), data.train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(data.val_x), data.val_y))
        epoch += 1
        metrics = {"val_loss": val_loss if math.isfinite(val_loss) else DIVERGED, "epoch": epoch, "lr": config["lr"]}
        if epoch % interval == 0 or epoch == epochs:
            with tempfile.TemporaryDirectory() as tempdir:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                           os.path.join(tempdir, "checkpoint.pt"))
                tune.report(metrics, checkpoint=Checkpoint.from_directory(tempdir))
        else:
            tune.report(metrics)


def ray_tune_pbt(seed: int, population: int, initial_lrs: Sequence[float], epochs: int, interval: int,
                 storage: str, synch: bool = False) -> dict[str, Any]:
    """One PBT run on the running Ray (started by the caller); ``initial_lrs``: the first population."""
    import numpy as np
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    assert len(initial_lrs) == population
    random.seed(seed)  # PBT's explore draws from random and numpy in the driver
    np.random.seed(seed)
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=interval,
        hyperparam_mutations={"lr": tune.loguniform(LR_LOW, LR_HIGH)},
        quantile_fraction=QUANTILE,
        resample_probability=RESAMPLE_PROBABILITY,
        perturbation_factors=FACTORS,
        synch=synch,
    )
    collector = _collector()
    tuner = tune.Tuner(
        ray_tune_trainable,
        param_space={"lr": tune.grid_search(list(initial_lrs)), "seed": seed, "epochs": epochs,
                     "checkpoint_interval": interval},
        tune_config=tune.TuneConfig(scheduler=scheduler, metric="val_loss", mode="min", num_samples=1,
                                    reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"pbt-p{population}-seed{seed}-{time.time_ns()}", storage_path=storage, verbose=0,
            stop={"training_iteration": epochs}, callbacks=[collector],
            checkpoint_config=tune.CheckpointConfig(checkpoint_score_attribute="val_loss", checkpoint_score_order="min",
                                                    num_to_keep=4),
        ),
    )
    started = time.perf_counter()
    grid = tuner.fit()
    seconds = time.perf_counter() - started
    errors = sum(1 for result in grid if result.error is not None)
    rows = collector.rows  # every epoch trained, in the order reported
    best = min((r for r in rows if r["val_loss"] is not None), key=lambda r: r["val_loss"], default=None)
    ends = [r["val_loss"] for r in rows if r["iteration"] == epochs]
    return {"method": RAY_PBT, "seed": seed, "population": population, "synch": synch, "seconds": round(seconds, 2),
            "best_val_loss": best["val_loss"] if best else None, "end_val_loss": lowest(ends),
            "epochs_trained": len(rows), "trials": len(grid), "errors": errors,
            "exploits": sum(1 for r in rows if r["exploited"]),
            "best_at": {"epoch": best["iteration"], "lr": float(f"{best['lr']:.4g}")} if best else None,
            # From fit() to the first epoch's result: Ray Tune starting its trial actors (and one epoch).
            "first_result_s": round(rows[0]["at"] - started, 2) if rows else None,
            "initial_lrs": list(initial_lrs)}


def _collector() -> Any:
    """A Tune callback that keeps every result the trials report (the driver sees each one; a
    trial's own result files lose the rows before a pause or an exploit)."""
    from ray import tune

    class Collector(tune.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []
            self._last: dict[str, tuple[int, float]] = {}

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                            **info: Any) -> None:
            step, lr = int(result["training_iteration"]), float(result["lr"])
            # A result that does not follow the trial's previous one (another epoch, another rate):
            # the trial continued another's checkpoint with a perturbed rate.
            last = self._last.get(trial.trial_id)
            exploited = last is not None and (step != last[0] + 1 or lr != last[1])
            self._last[trial.trial_id] = (step, lr)
            self.rows.append({"trial": trial.trial_id, "iteration": step, "val_loss": _finite(result["val_loss"]),
                              "lr": lr, "exploited": exploited, "at": time.perf_counter()})

    return Collector()


# -- summary ----------------------------------------------------------------------------------------
def _spread(values: Sequence[float | None]) -> dict[str, float | None]:
    xs = [v for v in values if v is not None]
    if not xs:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def summarize(runs: list[dict[str, Any]], populations: Sequence[int]) -> list[dict[str, Any]]:
    rows = []
    for p in populations:
        mine = {m: [r for r in runs if r["method"] == m and r.get("population", r.get("budget_of")) == p]
                for m in (LRSEARCH_PBT, RAY_PBT, AUTO)}
        by_seed = {m: {r["seed"]: r for r in rs} for m, rs in mine.items()}
        ratios = [by_seed[LRSEARCH_PBT][s]["seconds"] / by_seed[RAY_PBT][s]["seconds"]
                  for s in by_seed[LRSEARCH_PBT] if s in by_seed[RAY_PBT]]
        as_good = [by_seed[LRSEARCH_PBT][s]["best_val_loss"] <= by_seed[RAY_PBT][s]["best_val_loss"]
                   for s in by_seed[LRSEARCH_PBT] if s in by_seed[RAY_PBT]]
        for m, rs in mine.items():
            if not rs:
                continue
            row = {"population": p, "method": m, "seeds": [r["seed"] for r in rs],
                   "best_val_loss": _spread([r["best_val_loss"] for r in rs]),
                   "end_val_loss": _spread([r["end_val_loss"] for r in rs]),
                   "seconds": _spread([r["seconds"] for r in rs]),
                   # The epochs its figures come from (auto: its first P x 12, of those it trained).
                   "epochs": _spread([r.get("epochs_counted", r["epochs_trained"]) for r in rs]),
                   "epochs_trained": _spread([r["epochs_trained"] for r in rs])}
            if m == RAY_PBT:
                row["first_result_s"] = _spread([r["first_result_s"] for r in rs])
            if m == LRSEARCH_PBT and ratios:
                # Against Ray Tune's time after its first result: without starting its trial actors.
                row["wall_ratio_to_ray_tune_after_first_result"] = _spread([
                    by_seed[LRSEARCH_PBT][s]["seconds"] / (by_seed[RAY_PBT][s]["seconds"] - by_seed[RAY_PBT][s]["first_result_s"])
                    for s in by_seed[LRSEARCH_PBT] if s in by_seed[RAY_PBT] and by_seed[RAY_PBT][s]["first_result_s"]])
                row["wall_ratio_to_ray_tune"] = _spread(ratios)
                row["best_at_least_as_good_seeds"] = sum(as_good)
                med = row["best_val_loss"]["median"]
                ray_med = _spread([r["best_val_loss"] for r in mine[RAY_PBT]])["median"]
                row["target_met"] = bool(statistics.median(ratios) <= 0.5 and med is not None and ray_med is not None
                                         and med <= ray_med)
            rows.append(row)
    return rows


def _fmt(s: dict[str, float | None], spec: str, n: int) -> str:
    if s["median"] is None:
        return "-"
    med = format(s["median"], spec)
    return med if n == 1 else f"{med} ({format(s['min'], spec)}-{format(s['max'], spec)})"


def render(result: dict[str, Any]) -> str:
    n = len(result["config"]["seeds"])
    head = "median (min-max) over seeds " + ", ".join(map(str, result["config"]["seeds"])) if n > 1 else \
        f"seed {result['config']['seeds'][0]}"
    lines = [f"mlp-digits, sgd, lr {LR_LOW:g}-{LR_HIGH:g}, {EPOCHS} epochs, interval {INTERVAL}, "
             f"{NUM_CPUS} CPUs, 2 at a time; {head}:", "",
             "| population | method | best val_loss | end-of-run val_loss | wall (s) | epochs | "
             "lrsearch pbt / Ray Tune wall |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in result["summary"]:
        ratio = row.get("wall_ratio_to_ray_tune")
        lines.append(f"| {row['population']} | {row['method']} | {_fmt(row['best_val_loss'], '.4f', n)} | "
                     f"{_fmt(row['end_val_loss'], '.4f', n)} | {_fmt(row['seconds'], '.1f', n)} | "
                     f"{_fmt(row['epochs'], '.0f', n)} | "
                     f"{_fmt(ratio, '.2f', n) + 'x' if ratio else ''} |")
    ray = {row["population"]: row for row in result["summary"] if row["method"] == RAY_PBT}
    for row in result["summary"]:
        if "target_met" not in row:
            continue
        other = ray[row["population"]]
        lines.append("")
        lines.append(f"Population {row['population']}, the target (lrsearch pbt's wall at most 0.5x Ray Tune PBT's, "
                     f"its median best val_loss at least as good): {'met' if row['target_met'] else 'NOT met'}. "
                     f"Wall {row['wall_ratio_to_ray_tune']['median']:.2f}x; median best "
                     f"{row['best_val_loss']['median']:.4f} against {other['best_val_loss']['median']:.4f}, "
                     f"at least as good in {row['best_at_least_as_good_seeds']} of {len(row['seeds'])} seeds.")
        after = row.get("wall_ratio_to_ray_tune_after_first_result")
        if after and "first_result_s" in other:
            lines.append(f"Ray Tune took {_fmt(other['first_result_s'], '.1f', n)} s to its first result "
                         f"(starting its trial actors: torch, the data); against its time after that, lrsearch "
                         f"pbt's wall is {_fmt(after, '.2f', n)}x.")
    return "\n".join(lines)


# -- main -------------------------------------------------------------------------------------------
def _write(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    tmp.replace(path)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pbt", description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    p.add_argument("--populations", default="4,8", help="comma-separated population sizes (default 4,8)")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--interval", type=int, default=INTERVAL)
    p.add_argument("--methods", default="lrsearch,ray,auto", help="any of lrsearch,ray,auto (default all)")
    p.add_argument("--ray-synch", action="store_true", help=(
        "Ray Tune's PBT in its synchronous mode (synch=True: generations, as lrsearch's); default asynchronous"))
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, population 4, results in the temp dir")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--job-timeout", type=float, default=600.0, help="seconds one lrsearch job may take")
    args = p.parse_args(argv)
    populations = [int(x) for x in args.populations.split(",") if x.strip()]
    methods = {m.strip() for m in args.methods.split(",") if m.strip()}
    if args.quick:
        args.seeds, populations = 1, [4]
        if args.out == DEFAULT_OUT:  # a smoke run never overwrites the real results
            args.out = Path(tempfile.gettempdir()) / "lrsearch-bench-pbt-quick.json"
    seeds = list(range(args.seeds))
    t0 = time.monotonic()
    runs: list[dict[str, Any]] = []

    # 1 and 3: lrsearch through the service (its app owns the Ray it starts, and shuts it down).
    load = [os.getloadavg()[0]]
    if methods & {"lrsearch", "auto"}:
        with Service() as service:
            started = time.perf_counter()
            for spec in warm_up_specs():
                service.run_job(spec, args.job_timeout)
            say(f"warm-up jobs: {time.perf_counter() - started:.1f} s")
            for population in populations:
                for seed in seeds:
                    if "lrsearch" in methods:
                        r = lrsearch_pbt(service, seed, population, args.epochs, args.interval, args.job_timeout)
                        runs.append(r)
                        say(f"{LRSEARCH_PBT} P={population} seed {seed}: best {r['best_val_loss']:.4f}, end "
                            f"{r['end_val_loss']:.4f}, {r['seconds']} s, {r['exploits']} exploits")
                    if "auto" in methods:
                        budget = population * args.epochs
                        r = lrsearch_auto(service, seed, auto_trials(budget), args.epochs, population,
                                          args.job_timeout)
                        runs.append(r)
                        say(f"{AUTO} ({r['max_trials']} trials) seed {seed}: best {r['best_val_loss']:.4f}, "
                            f"{r['epochs_trained']} epochs, {r['seconds']} s")
    # 2: Ray Tune on a Ray of its own, the service's gone.
    if "ray" in methods:
        import ray

        storage = tempfile.TemporaryDirectory(prefix="lrsearch-bench-tune-")
        try:
            ray.init(address="local", num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False)
            for population in populations:
                for seed in seeds:
                    first = initial_population(seed, population, args.epochs, args.interval)
                    r = ray_tune_pbt(seed, population, first, args.epochs, args.interval, storage.name, args.ray_synch)
                    runs.append(r)
                    say(f"{RAY_PBT} P={population} seed {seed}: best {r['best_val_loss']:.4f}, end "
                        f"{r['end_val_loss']:.4f}, {r['seconds']} s")
        finally:
            ray.shutdown()
            storage.cleanup()
    load.append(os.getloadavg()[0])

    result: dict[str, Any] = {
        "benchmark": "pbt",
        "date": time.strftime("%Y-%m-%d"),
        "config": {"workload": WORKLOAD, "space": space(), "epochs": args.epochs, "interval": args.interval,
                   "populations": populations, "seeds": seeds, "concurrency": CONCURRENCY, "num_cpus": NUM_CPUS,
                   "quantile": QUANTILE, "resample_probability": RESAMPLE_PROBABILITY, "factors": list(FACTORS),
                   "auto": {"space": space(SCHEDULES), "max_trials": {p: auto_trials(p * args.epochs)
                                                                      for p in populations},
                            "epochs_per_trial": AUTO_EPOCHS_PER_TRIAL},
                   "ray_tune": "PopulationBasedTraining(time_attr='training_iteration', perturbation_interval, "
                               "hyperparam_mutations={'lr': loguniform}, quantile_fraction, resample_probability, "
                               "perturbation_factors), asynchronous; function trainable checkpointing every interval; "
                               "reuse_actors=True; first population: lrsearch's generation 0",
                   "quick": args.quick},
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "load_average_1min": {"start": load[0], "end": load[-1]}},
        "runs": runs,
    }
    result["summary"] = summarize(runs, populations)
    result["seconds"] = round(time.monotonic() - t0, 1)
    result["table"] = render(result)
    _write(args.out, result)
    print(result["table"])
    say(f"done in {result['seconds']:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
