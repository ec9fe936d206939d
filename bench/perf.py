"""Performance benchmarks, side by side in one run (``make bench`` or ``python -m bench.perf``).

P1  end to end: 16 trials x 8 epochs of mlp-digits at concurrency 2, from the REST submit until
    every metric is stored, against (a) Ray Tune as users usually write it (OptunaSearch + ASHA,
    defaults), (b) Ray Tune tuned (reused actors, a concurrency limit of 2, file loggers off) and
    (c) the same 16 trainings as a bare loop in one process (the floor on two cores is half of it).
P3  API and storage: a job of 1,000 trials x 30 epochs stored in SQLite and in PostgreSQL:
    p50/p99 of the trials list, a job, best and one trial's metrics; metric rows ingested per
    second through the runner's own write path while readers query.
P4  scale: a 1,000-trial job of the synthetic workload: per-trial overhead and the service
    process's peak RSS (not counting Ray's processes).

Each variant runs in its own process. Results: a table on stdout and bench/results/perf.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
EPOCHS = 8
LRS = [0.001, 0.00268, 0.00720, 0.0193, 0.0518, 0.139, 0.373, 1.0]
CONFIGS = [{"lr": lr, "optimizer": opt} for opt in ("sgd", "adam") for lr in LRS]


# -- shared pieces ------------------------------------------------------------------------------
def _trainer_config(c: dict[str, Any]) -> dict[str, Any]:
    from lrsearch.search.catalog import complete_config

    return complete_config({"schedule": "constant", "warmup_fraction": 0.0, **c}, EPOCHS)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A real ``lrsearch serve`` in its own process group."""

    def __init__(self, db: str, env: dict[str, str] | None = None, num_cpus: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = tempfile.mkdtemp(prefix="lrsearch-bench-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lrsearch.service.cli", "serve", "--port", str(self.port), "--db", db,
             "--num-cpus", str(num_cpus), "--log-level", "warning"],
            cwd=REPO, env={**os.environ, "LRSEARCH_DATA_DIR": data, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{self.url}/api/v1/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("lrsearch serve did not start")
            time.sleep(0.2)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_job(url: str, spec: dict[str, Any], poll: float = 0.2) -> tuple[float, dict[str, Any]]:
    """Submit over REST and wait until the job ends; returns (seconds, job): from the POST to the
    job's end as the service stamps it, after its last metric row is committed. The client polls
    slowly: asking every 20 ms took some 150 ms of CPU from the trials of P1 on two cores."""
    from datetime import datetime

    import httpx

    with httpx.Client(base_url=url, timeout=60) as c:
        c.get("/api/v1/healthz")  # connected before the clock starts
        t0 = time.time()
        job = c.post("/api/v1/jobs", json=spec).json()
        while (job := c.get(f"/api/v1/jobs/{job['id']}").json())["status"] not in ("completed", "failed",
                                                                                    "cancelled"):
            time.sleep(poll)
        return datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00")).timestamp() - t0, job


# -- P1 variants (each in its own process) --------------------------------------------------------
def variant_bare() -> float:
    """The 16 trainings one after another in this process, one thread: no framework at all."""
    import torch

    from lrsearch.workers.registry import get_workload
    from lrsearch.workers.trainer import TrialTrainer, warm_up

    torch.set_num_threads(1)
    warm_up(["mlp-digits"])
    wl = get_workload("mlp-digits")
    data = wl.load_data(seed=0)
    t0 = time.perf_counter()
    for c in CONFIGS:
        trainer = TrialTrainer(wl, data, _trainer_config(c), epochs=EPOCHS, seed=0)
        while not trainer.finished:
            trainer.run_epoch()
    return time.perf_counter() - t0


def _tune_trainable(config: dict[str, Any]) -> None:
    import torch
    from ray import tune

    from lrsearch.workers.registry import get_workload
    from lrsearch.workers.trainer import TrialTrainer

    torch.set_num_threads(1)
    wl = get_workload("mlp-digits")
    data = wl.load_data(seed=0)
    cfg = config.get("cfg") or {"lr": config["lr"], "optimizer": config["optimizer"]}
    trainer = TrialTrainer(wl, data, _trainer_config(cfg), epochs=EPOCHS, seed=0)
    while not trainer.finished:
        r = trainer.run_epoch()
        tune.report({"val_loss": r.val_loss if r.val_loss == r.val_loss else 1e9, "epoch": r.epoch})
        if r.diverged:
            break


def variant_tune(tuned: bool) -> float:
    import ray
    from ray import tune

    if tuned:
        os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="tune-")
    from ray.tune import RunConfig

    if tuned:
        # As an expert writes it: the same 16 configs, reused actors, 2 at a time, no file loggers.
        tuner = tune.Tuner(
            _tune_trainable,
            param_space={"cfg": tune.grid_search(CONFIGS)},
            tune_config=tune.TuneConfig(metric="val_loss", mode="min", reuse_actors=True, max_concurrent_trials=2),
            run_config=RunConfig(storage_path=storage, verbose=0),
        )
    else:
        # As users usually write it: OptunaSearch + ASHA with the defaults.
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch

        tuner = tune.Tuner(
            _tune_trainable,
            param_space={"lr": tune.loguniform(1e-3, 1.0), "optimizer": tune.choice(["sgd", "adam"])},
            tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=16, search_alg=OptunaSearch(),
                                        scheduler=ASHAScheduler(max_t=EPOCHS, time_attr="training_iteration")),
            run_config=RunConfig(storage_path=storage, verbose=0),
        )
    t0 = time.perf_counter()
    tuner.fit()
    return time.perf_counter() - t0


def variant_lrsearch() -> dict[str, float]:
    """REST submit -> every metric stored, on a running service (started and warmed before timing)."""
    import httpx

    db = Path(tempfile.mkdtemp()) / "p1.db"
    service = Service(f"sqlite:///{db}")
    try:
        run_job(service.url, {"workload": "mlp-digits", "strategy": "manual", "epochs": 1,
                              "configs": [{"lr": 0.01}, {"lr": 0.02}]})  # warm: data loaded on the actors
        spec = {"workload": "mlp-digits", "strategy": "manual", "epochs": EPOCHS, "max_concurrent": 2,
                "configs": [{**c, "schedule": "constant"} for c in CONFIGS]}
        seconds, job = run_job(service.url, spec)
        rows = sum(len(httpx.get(f"{service.url}/api/v1/jobs/{job['id']}/trials/{n}/metrics").json()["items"])
                   for n in range(len(CONFIGS)))
        assert job["status"] == "completed", job
        return {"seconds": seconds, "metric_rows": rows}
    finally:
        service.stop()


def _in_process(name: str) -> Any:
    out = subprocess.run([sys.executable, "-m", "bench.perf", "--variant", name], cwd=REPO, capture_output=True,
                         text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def p1(repeats: int) -> dict[str, Any]:
    runs: dict[str, list[float]] = {"lrsearch": [], "tune_naive": [], "tune_tuned": [], "bare_serial": []}
    rows = 0
    for _ in range(repeats):
        for name in runs:
            result = _in_process(name)
            if name == "lrsearch":
                runs[name].append(result["seconds"])
                rows = result["metric_rows"]
            else:
                runs[name].append(result)
    med = {k: statistics.median(v) for k, v in runs.items()}
    floor = med["bare_serial"] / 2
    n = len(CONFIGS)
    return {
        "runs": runs, "median_s": med, "metric_rows": rows, "floor_s": floor,
        "ratio_to_tune_tuned": med["lrsearch"] / med["tune_tuned"],
        "ratio_to_tune_naive": med["lrsearch"] / med["tune_naive"],
        "ratio_to_floor": med["lrsearch"] / floor,
        # Wall time beyond the floor, per trial, on each of the 2 slots.
        "overhead_ms_per_trial": (med["lrsearch"] * 2 - med["bare_serial"]) / n * 1000,
        "tune_tuned_overhead_ms_per_trial": (med["tune_tuned"] * 2 - med["bare_serial"]) / n * 1000,
    }


# -- P3 -------------------------------------------------------------------------------------------
def _pg_url() -> tuple[str, str] | None:
    try:
        import psycopg

        name = f"lrsearch_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True,
                             connect_timeout=3) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return name, f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    except Exception:  # noqa: BLE001
        return None


def _drop_pg(name: str) -> None:
    import psycopg

    with psycopg.connect(host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill(url: str, trials: int = 1000, epochs: int = 30) -> int:
    """A finished job of ``trials`` x ``epochs`` stored with bulk inserts."""
    import math
    import random

    from sqlalchemy import insert

    from lrsearch.service.db import make_engine, upgrade
    from lrsearch.service.models import Job, Metric, Trial, utcnow

    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(0)
    with engine.begin() as conn:
        job_id = conn.execute(insert(Job).values(
            name="p3", status="completed", spec={"workload": "mlp-digits", "strategy": "random"},
            strategy_state={}, total_trials=trials, created_at=utcnow(), cancel_requested=False)).inserted_primary_key[0]
        trial_rows = []
        for n in range(trials):
            lr = 10 ** rng.uniform(-5, 1)
            trial_rows.append({"job_id": job_id, "number": n, "status": "completed", "epochs": epochs,
                               "config": {"lr": lr, "optimizer": "sgd", "schedule": "constant",
                                          "warmup_fraction": 0.0},
                               "val_loss": (v := 0.1 + (math.log10(lr) + 1.5) ** 2 / 10), "objective": v,
                               "best_epoch": epochs - 1,
                               "attempts": 1, "started_at": utcnow(), "finished_at": utcnow()})
        conn.execute(insert(Trial), trial_rows)
        ids = [r[0] for r in conn.exec_driver_sql(f"SELECT id FROM trials WHERE job_id = {job_id} ORDER BY number")]
        metric_rows = [{"trial_id": tid, "epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.0 / (e + 1),
                        "val_accuracy": 0.9, "lr": 0.1} for tid in ids for e in range(epochs)]
        for i in range(0, len(metric_rows), 5000):
            conn.execute(insert(Metric), metric_rows[i:i + 5000])
    engine.dispose()
    return int(job_id)


def _latencies(url: str, path: str, n: int = 200) -> dict[str, float]:
    import httpx

    times = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for _ in range(5):
            c.get(path)
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.get(path)
            times.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200, (path, r.status_code)
    times.sort()
    return {"p50_ms": times[len(times) // 2], "p99_ms": times[int(len(times) * 0.99) - 1]}


def _ingest(url: str, seconds: float = 5.0, writers: int = 16) -> float:
    """Metric rows committed per second through JobRunner.record (the runner's write
    path: group commit, each trial waiting for its rows at its end), with ``writers`` trials
    reporting at once and a reader listing trials meanwhile."""
    from sqlalchemy import select

    from lrsearch.search.objective import Objective
    from lrsearch.service.config import Settings
    from lrsearch.service.db import make_engine, make_session_factory, upgrade
    from lrsearch.service.ingest import epoch_row
    from lrsearch.service.models import Job, Trial
    from lrsearch.service.runner import JobRunner
    from lrsearch.workers.in_process_executor import InProcessExecutor

    engine = make_engine(url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        job = Job(name="ingest", status="running", spec={}, strategy_state={})
        s.add(job)
        s.flush()
        trial_ids = []
        for n in range(writers * 1000):
            t = Trial(job_id=job.id, number=n, status="running", config={"lr": 0.1})
            s.add(t)
            s.flush()
            trial_ids.append(t.id)
        job_id = job.id
    runner = JobRunner(sessions, InProcessExecutor(), Settings(database_url=url, data_dir=tempfile.mkdtemp()))
    objective = Objective()
    stop = threading.Event()
    futures: list[list[Any]] = [[] for _ in range(writers)]

    def write(w: int) -> None:
        tid_iter = iter(trial_ids[w::writers])
        tid, epoch = next(tid_iter), 0
        while not stop.is_set():
            futures[w].append(runner.record(epoch_row(tid, {"epoch": epoch, "train_loss": 0.5, "val_loss": 0.4,
                                                             "val_accuracy": 0.9, "lr": 0.1}, objective)))
            epoch += 1
            if epoch == 30:
                # A trial's end waits until its rows are committed, as the runner does.
                futures[w][-1].result()
                tid, epoch = next(tid_iter), 0

    def read() -> None:
        while not stop.is_set():
            with sessions() as s:
                list(s.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number).limit(1000)))
            time.sleep(0.01)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)] + [threading.Thread(target=read)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    stored = sum(1 for fs in futures for f in fs if f.result())  # rows committed, waited for
    elapsed = time.perf_counter() - t0
    runner.writer.stop()
    engine.dispose()
    return stored / elapsed


def p3() -> dict[str, Any]:
    out: dict[str, Any] = {}
    backends: list[tuple[str, str, str | None]] = [("sqlite", f"sqlite:///{Path(tempfile.mkdtemp()) / 'p3.db'}", None)]
    pg = _pg_url()
    if pg is not None:
        backends.append(("postgresql", pg[1], pg[0]))
    for name, url, pg_name in backends:
        try:
            job_id = _fill(url)
            service = Service(url, env={"LRSEARCH_RUN_JOBS": "false"})
            try:
                out[name] = {
                    "trials_list": _latencies(service.url, f"/api/v1/jobs/{job_id}/trials"),
                    "job": _latencies(service.url, f"/api/v1/jobs/{job_id}"),
                    "best": _latencies(service.url, f"/api/v1/jobs/{job_id}/best"),
                    "metrics": _latencies(service.url, f"/api/v1/jobs/{job_id}/trials/500/metrics"),
                }
            finally:
                service.stop()
            ingest_url = url
            if name == "sqlite":
                ingest_url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'ingest.db'}"
            out[name]["ingest_rows_per_s"] = _ingest(ingest_url)
        finally:
            if pg_name:
                _drop_pg(pg_name)
    return out


# -- P4 -------------------------------------------------------------------------------------------
def _bare_synthetic(trials: int, epochs: int) -> float:
    import torch

    from lrsearch.workers.registry import get_workload
    from lrsearch.workers.trainer import TrialTrainer, warm_up

    torch.set_num_threads(1)
    warm_up(["synthetic"])
    wl = get_workload("synthetic")
    data = wl.load_data(seed=0)
    t0 = time.perf_counter()
    for i in range(trials):
        trainer = TrialTrainer(wl, data, _trainer_config({"lr": 0.01 * (1 + i % 7), "optimizer": "sgd"}),
                               epochs=epochs, seed=0)
        while not trainer.finished:
            trainer.run_epoch()
    return (time.perf_counter() - t0) / trials


def p4(trials: int, epochs: int = 5) -> dict[str, Any]:
    db = Path(tempfile.mkdtemp()) / "p4.db"
    service = Service(f"sqlite:///{db}")
    try:
        run_job(service.url, {"workload": "synthetic", "strategy": "manual", "epochs": 1,
                              "configs": [{"lr": 0.01}, {"lr": 0.02}]})
        spec = {"workload": "synthetic", "strategy": "random", "max_trials": trials, "max_concurrent": 2,
                "epochs": epochs, "seed": 0, "space": {"lr": {"low": 1e-4, "high": 0.3},
                                                       "optimizer": ["sgd", "adam"]}}
        seconds, job = run_job(service.url, spec, poll=0.2)
        rss = service.peak_rss_mb()
    finally:
        service.stop()
    bare = _in_process(f"bare-synthetic:{epochs}")
    finished = sum(job["trial_counts"][k] for k in ("completed", "pruned", "diverged", "failed", "cancelled"))
    return {"trials": trials, "epochs": epochs, "status": job["status"], "finished": finished,
            "seconds": seconds, "bare_trial_s": bare,
            "overhead_ms_per_trial": (seconds * 2 / trials - bare) * 1000, "service_peak_rss_mb": rss}


# -- P5 -------------------------------------------------------------------------------------------
def p5(trials: int, only: set[str] | None = None) -> dict[str, Any]:
    """A ``trials``-trial synthetic job (one epoch each) through a real ``lrsearch serve`` on each
    backend: its time, the service's peak RSS, then the reads of the stored job."""
    out: dict[str, Any] = {}
    backends: list[tuple[str, str, str | None]] = [("sqlite", f"sqlite:///{Path(tempfile.mkdtemp()) / 'p5.db'}", None)]
    pg = _pg_url() if only is None or "postgresql" in only else None
    if pg is not None:
        backends.append(("postgresql", pg[1], pg[0]))
    for name, url, pg_name in backends:
        if only is not None and name not in only:
            continue
        try:
            service = Service(url)
            try:
                spec = {"workload": "synthetic", "strategy": "random", "max_trials": trials, "max_concurrent": 2,
                        "epochs": 1, "seed": 0, "space": {"lr": {"low": 1e-4, "high": 0.3},
                                                          "optimizer": ["sgd", "adam"]}}
                seconds, job = run_job(service.url, spec, poll=2.0)
                rss = service.peak_rss_mb()
                finished = sum(job["trial_counts"][k] for k in ("completed", "pruned", "diverged", "failed",
                                                                  "cancelled"))
                last_page = f"/api/v1/jobs/{job['id']}/trials?limit=100&offset={max(0, trials - 100)}"
                out[name] = {"trials": trials, "status": job["status"], "finished": finished, "seconds": seconds,
                             "ms_per_trial_per_slot": seconds * 2 / trials * 1000, "service_peak_rss_mb": rss,
                             "trials_last_page": _latencies(service.url, last_page),
                             "best": _latencies(service.url, f"/api/v1/jobs/{job['id']}/best"),
                             "job": _latencies(service.url, f"/api/v1/jobs/{job['id']}")}
            finally:
                service.stop()
        finally:
            if pg_name:
                _drop_pg(pg_name)
    return out


# -- P6 -------------------------------------------------------------------------------------------
def _fill_varied(url: str, trials: int, epochs: int) -> int:
    """A finished job of ``trials`` x ``epochs`` whose curves depend on each trial's rate (and some
    diverged), as a search leaves them, stored with bulk inserts."""
    import math
    import random

    from sqlalchemy import insert

    from lrsearch.service.db import make_engine, upgrade
    from lrsearch.service.models import Job, Metric, Trial, utcnow

    engine = make_engine(url)
    upgrade(engine)
    rng = random.Random(1)
    with engine.begin() as conn:
        job_id = conn.execute(insert(Job).values(
            name="p6", status="completed", spec={"workload": "synthetic", "strategy": "random", "epochs": epochs,
                                                 "max_trials": trials, "max_concurrent": 2},
            strategy_state={}, total_trials=trials, created_at=utcnow(), started_at=utcnow(), finished_at=utcnow(),
            cancel_requested=False)).inserted_primary_key[0]
        rows, curves = [], []
        for n in range(trials):
            lr, opt = 10 ** rng.uniform(-4, 0), rng.choice(["sgd", "adam"])
            floor = 0.05 + (math.log10(lr) + 1.8) ** 2 / 8 + rng.uniform(0, 0.02)
            diverged = lr > 0.5 and rng.random() < 0.5
            curve = [floor + (1.5 - floor) * math.exp(-e * 0.6) for e in range(epochs)]
            if diverged:
                curve = curve[:rng.randint(1, epochs)]
            curves.append(curve)
            rows.append({"job_id": job_id, "number": n, "status": "diverged" if diverged else "completed",
                         "epochs": len(curve), "config": {"lr": lr, "optimizer": opt, "schedule": "cosine",
                                                           "warmup_fraction": 0.0},
                         "val_loss": min(curve), "objective": min(curve), "best_epoch": curve.index(min(curve)),
                         "attempts": 1, "started_at": utcnow(), "finished_at": utcnow(), "kind": "training"})
        conn.execute(insert(Trial), rows)
        ids = [r[0] for r in conn.exec_driver_sql(f"SELECT id FROM trials WHERE job_id = {job_id} ORDER BY number")]
        metric_rows = [{"trial_id": tid, "epoch": e, "train_loss": v * 0.9, "val_loss": v, "val_accuracy": None,
                        "lr": rows[i]["config"]["lr"]} for i, (tid, curve) in enumerate(zip(ids, curves))
                       for e, v in enumerate(curve)]
        for i in range(0, len(metric_rows), 5000):
            conn.execute(insert(Metric), metric_rows[i:i + 5000])
    engine.dispose()
    return int(job_id)


_PLOTS_DRAWN = """() => ['plot-lr-loss', 'plot-val', 'plot-train', 'plot-lr-traj', 'plot-best-so-far', 'plot-parcoords']
    .every((id) => document.getElementById(id).querySelector('.main-svg'))"""


def p6(trials: int = 10_000, epochs: int = 10, watch_seconds: float = 20.0) -> dict[str, Any]:
    """The job page of a ``trials``-trial job in headless Chromium: how long until its plots are
    drawn (a finished job, stored), and what each poll transfers while such a job runs."""
    from playwright.sync_api import sync_playwright

    db = Path(tempfile.mkdtemp()) / "p6.db"
    url = f"sqlite:///{db}"
    stored = _fill_varied(url, trials, epochs)
    service = Service(url)
    out: dict[str, Any] = {"trials": trials, "epochs": epochs}
    try:
        import httpx

        spec = {"workload": "synthetic", "strategy": "random", "max_trials": trials, "max_concurrent": 2, "epochs": 1,
                "seed": 0, "space": {"lr": {"low": 1e-4, "high": 0.3}, "optimizer": ["sgd", "adam"]}}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            try:
                loads = []
                for _ in range(3):
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t0 = time.perf_counter()
                    page.goto(f"{service.url}/jobs/{stored}")
                    page.wait_for_function(_PLOTS_DRAWN, timeout=60_000, polling=20)
                    loads.append(time.perf_counter() - t0)
                    page.close()
                out["stored_page_plots_drawn_s"] = statistics.median(loads)
                out["stored_page_loads_s"] = loads
                # While the live job runs: the bytes of every answer, grouped by poll (a poll starts
                # with its GET of the job).
                live = httpx.post(f"{service.url}/api/v1/jobs", json=spec).json()["id"]
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                polls: list[int] = []
                first_answers: list[str] = []

                def on_response(response: Any) -> None:
                    path = response.url.split(service.url, 1)[-1]
                    if "/api/v1/" not in path and "/dashboard-api/" not in path:
                        return
                    size = len(response.body())
                    if path.split("?")[0] == f"/api/v1/jobs/{live}":
                        polls.append(0)
                    if polls:
                        polls[-1] += size
                    else:
                        first_answers.append(path)

                page.on("response", on_response)
                page.goto(f"{service.url}/jobs/{live}")
                page.wait_for_function(_PLOTS_DRAWN, timeout=60_000, polling=50)
                page.wait_for_timeout(watch_seconds * 1000)
                job = httpx.get(f"{service.url}/api/v1/jobs/{live}").json()
                out["live"] = {"polls": len(polls), "first_poll_bytes": polls[0] if polls else None,
                               "later_polls_max_bytes": max(polls[1:], default=None),
                               "later_polls_median_bytes": statistics.median(polls[1:]) if len(polls) > 1 else None,
                               "trials_finished_meanwhile": sum(job["trial_counts"][k] for k in (
                                   "completed", "pruned", "diverged", "failed", "cancelled")),
                               "status": job["status"]}
                page.close()
                httpx.post(f"{service.url}/api/v1/jobs/{live}/cancel")
            finally:
                browser.close()
    finally:
        service.stop()
    return out


# -- P7 -------------------------------------------------------------------------------------------
def p7(sizes: tuple[int, ...] = (100, 1000, 5000, 20_000), uncapped_up_to: int = 5000) -> dict[str, Any]:
    """Milliseconds per suggestion of each strategy as its history grows: told ``n`` finished
    trials (random configs, losses of a landscape in log lr, some diverged), the mean of the next
    5 suggestions."""
    import math
    import random
    from dataclasses import replace

    from lrsearch.search import make_strategy
    from lrsearch.search.decisions import trial_outcome
    from lrsearch.search.space import parse_space
    from lrsearch.search.strategies.base import StrategySpec

    space = parse_space({"lr": {"low": 1e-4, "high": 1.0}, "optimizer": ["sgd", "adam"]})
    variants = {"random": ("random", {}), "bayesian (TPE, default history cap)": ("bayesian", {}),
                "bayesian (TPE, no cap)": ("bayesian", {"max_history": 1_000_000})}
    out: dict[str, Any] = {}
    for label, (name, options) in variants.items():
        spec = StrategySpec(space=space, epochs=5, seed=0, max_trials=max(sizes) * 2, options=options)
        strategy, draws = make_strategy(name, spec), make_strategy("random", replace(spec, options={}))
        rng, done, row = random.Random(0), 0, {}
        for n in sizes:
            if "no cap" in label and n > uncapped_up_to:
                break
            while done < n:  # the history, told directly: what the suggestions cost is the question
                config = draws.suggest()
                assert config is not None
                loss = 0.1 + (math.log10(config["lr"]) + 2) ** 2 / 10 + rng.uniform(0, 0.05)
                status = "diverged" if config["lr"] > 0.5 and rng.random() < 0.5 else "completed"
                strategy.observe(trial_outcome(done, config, status, [None] if status == "diverged" else [loss]))
                done += 1
            t0 = time.perf_counter()
            for _ in range(5):
                config = strategy.suggest()
                assert config is not None
                strategy.observe(trial_outcome(done, config, "completed", [0.5]))
                done += 1
            row[n] = (time.perf_counter() - t0) / 5 * 1000
        out[label] = row
    return out


# -- report ---------------------------------------------------------------------------------------
def table(results: dict[str, Any]) -> str:
    lines = []
    if "p1" in results:
        r = results["p1"]
        m = r["median_s"]
        lines += ["#### P1 end to end: 16 trials x 8 epochs of mlp-digits, concurrency 2 (median of "
                  f"{len(r['runs']['lrsearch'])})", "",
                  "| variant | wall (s) | lrsearch / variant |", "| --- | ---: | ---: |",
                  f"| lrsearch (REST submit -> {r['metric_rows']} metric rows stored) | {m['lrsearch']:.2f} | 1.00 |",
                  f"| Ray Tune as usually written (OptunaSearch + ASHA) | {m['tune_naive']:.2f} | "
                  f"{r['ratio_to_tune_naive']:.2f} |",
                  f"| Ray Tune tuned (reused actors, 2 at a time, loggers off) | {m['tune_tuned']:.2f} | "
                  f"{r['ratio_to_tune_tuned']:.2f} |",
                  f"| bare loop, one process (serial) | {m['bare_serial']:.2f} | |",
                  f"| floor on 2 cores (bare / 2) | {r['floor_s']:.2f} | {r['ratio_to_floor']:.2f} |", "",
                  f"Per-trial overhead: lrsearch {r['overhead_ms_per_trial']:.0f} ms, tuned Ray Tune "
                  f"{r['tune_tuned_overhead_ms_per_trial']:.0f} ms.", ""]
    if "p3" in results:
        lines += ["#### P3 API and storage: 1,000 trials x 30 epochs stored", "",
                  "| backend | trials list p50/p99 (ms) | job p50/p99 | best p50/p99 | metrics p50/p99 | ingest rows/s |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in results["p3"].items():
            cells = [f"{r[k]['p50_ms']:.1f} / {r[k]['p99_ms']:.1f}" for k in ("trials_list", "job", "best", "metrics")]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['ingest_rows_per_s']:.0f} |")
        lines.append("")
    if "p4" in results:
        r = results["p4"]
        lines += [f"#### P4 scale: {r['trials']} trials x {r['epochs']} epochs of `synthetic`", "",
                  f"{r['status']}, {r['finished']} trials finished in {r['seconds']:.1f} s; per-trial overhead "
                  f"{r['overhead_ms_per_trial']:.1f} ms (a bare synthetic trial trains in "
                  f"{r['bare_trial_s'] * 1000:.1f} ms); service peak RSS {r['service_peak_rss_mb']:.0f} MB.", ""]
    if "p5" in results:
        lines += ["#### P5 a big job: synthetic, one epoch per trial, concurrency 2, through `lrsearch serve`", "",
                  "| backend | trials | wall (s) | ms / trial / slot | service peak RSS (MB) | "
                  "trials page at the end p50/p99 (ms) | best p50/p99 | job p50/p99 |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for name, r in results["p5"].items():
            cells = [f"{r[k]['p50_ms']:.1f} / {r[k]['p99_ms']:.1f}" for k in ("trials_last_page", "best", "job")]
            lines.append(f"| {name} | {r['finished']:,} of {r['trials']:,} ({r['status']}) | {r['seconds']:.0f} | "
                         f"{r['ms_per_trial_per_slot']:.1f} | {r['service_peak_rss_mb']:.0f} | " + " | ".join(cells) + " |")
        lines.append("")
    if "p6" in results:
        r = results["p6"]
        live = r.get("live", {})
        lines += [f"#### P6 the job page of a {r['trials']:,}-trial job in headless Chromium", "",
                  f"A finished job of {r['trials']:,} trials x {r['epochs']} epochs: plots drawn "
                  f"{r['stored_page_plots_drawn_s']:.2f} s after navigation (median of 3). While a "
                  f"{r['trials']:,}-trial job runs ({live.get('trials_finished_meanwhile')} trials finished by the "
                  f"end): {live.get('polls')} polls, the first {(live.get('first_poll_bytes') or 0) / 1024:.1f} KB, "
                  f"each later one at most {(live.get('later_polls_max_bytes') or 0) / 1024:.1f} KB (median "
                  f"{(live.get('later_polls_median_bytes') or 0) / 1024:.1f} KB).", ""]
    if "p7" in results:
        sizes = sorted({int(n) for row in results["p7"].values() for n in row})
        lines += ["#### P7 milliseconds per suggestion after n finished trials", "",
                  "| strategy | " + " | ".join(f"n = {n:,}" for n in sizes) + " |",
                  "| --- | " + " | ".join("---:" for _ in sizes) + " |"]
        for label, row in results["p7"].items():
            row = {int(k): v for k, v in row.items()}
            lines.append(f"| {label} | " + " | ".join(f"{row[n]:.1f}" if n in row else "" for n in sizes) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="p1,p3,p4,p5,p6,p7", help="which parts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="P1 runs per variant (medians reported)")
    parser.add_argument("--p4-trials", type=int, default=1000)
    parser.add_argument("--p5-trials", type=int, default=100_000)
    parser.add_argument("--p5-backends", default="sqlite,postgresql", help="P5's backends, comma-separated")
    parser.add_argument("--out", default=str(RESULTS / "perf.json"))
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # a child process: print one JSON value
        v = args.variant
        if v == "bare_serial":
            result: Any = variant_bare()
        elif v == "tune_naive":
            result = variant_tune(tuned=False)
        elif v == "tune_tuned":
            result = variant_tune(tuned=True)
        elif v == "lrsearch":
            result = variant_lrsearch()
        elif v.startswith("bare-synthetic:"):
            result = _bare_synthetic(100, int(v.split(":")[1]))
        else:
            raise SystemExit(f"unknown variant {v}")
        print(json.dumps(result))
        return
    parts = set(args.only.split(","))
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count()}, "when": time.strftime("%Y-%m-%d %H:%M")}
    if "p1" in parts:
        results["p1"] = p1(args.repeats)
    if "p3" in parts:
        results["p3"] = p3()
    if "p4" in parts:
        results["p4"] = p4(args.p4_trials)
    if "p5" in parts:
        results["p5"] = p5(args.p5_trials, set(args.p5_backends.split(",")))
    if "p6" in parts:
        results["p6"] = p6()
    if "p7" in parts:
        results["p7"] = p7()
    print(table(results))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
