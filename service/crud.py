"""Queries shared by the API and the job runner. Counts and bests are single grouped queries."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from fastapi import Response
from sqlalchemy import Text, cast, func, select, tuple_
from sqlalchemy.orm import Session

from lrsearch.search.objective import Objective
from lrsearch.search.strategies import RANGE_TEST_KEY, STRATEGIES, TrialKind, training_config
from lrsearch.service.derived import derived
from lrsearch.service.models import Job, Metric, RangeTestPoint, Trial
from lrsearch.service.schemas import (
    Best,
    BestDetail,
    JobPublic,
    LrInterval,
    ObjectiveValue,
    OptimizerBest,
    Population,
    RangeTestCurve,
    RangeTestOptimizer,
    RangeTestSummary,
    TrialCounts,
    TrialPublic,
)

log = logging.getLogger(__name__)


def finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def trial_counts(session: Session, job_ids: Sequence[int]) -> dict[int, TrialCounts]:
    counts: dict[int, dict[str, int]] = {j: {} for j in job_ids}
    if job_ids:
        rows = session.execute(
            select(Trial.job_id, Trial.status, func.count())
            .where(Trial.job_id.in_(job_ids))
            .group_by(Trial.job_id, Trial.status)
        )
        for job_id, status, n in rows:
            counts[job_id][status] = n
    return {j: TrialCounts(**c) for j, c in counts.items()}


def job_objective(job: Job) -> Objective:
    return Objective.of(job.spec.get("objective"))


def _ranking(objective: Objective) -> tuple[Any, Any]:
    """ORDER BY for a job's trials, best first (ties: lowest number)."""
    return (Trial.objective.desc() if objective.maximize else Trial.objective.asc()), Trial.number.asc()


def best_trials(session: Session, jobs: Sequence[Job]) -> dict[int, Best]:
    """The best trial of each job by its objective (ties: lowest number): one indexed query per job
    (a window over every trial of a 100,000-trial job would read them all), and one for the steps
    of those bests."""
    found = [(trial, job_objective(job)) for job in jobs if (trial := best_trial(session, job)) is not None]
    steps = _best_steps(session, [trial for trial, _ in found])
    return {trial.job_id: to_best(trial, objective, steps.get(trial.id)) for trial, objective in found}


def _best_steps(session: Session, trials: Sequence[Trial]) -> dict[int, int | None]:
    """The step of each trial's best evaluation (step jobs; None in rows of older versions)."""
    pairs = [(t.id, t.best_epoch) for t in trials if t.best_epoch is not None]
    if not pairs:
        return {}
    rows = session.execute(select(Metric.trial_id, Metric.step)
                           .where(tuple_(Metric.trial_id, Metric.epoch).in_(pairs)))
    return dict(rows.tuples().all())


def best_trial(session: Session, job: Job) -> Trial | None:
    return session.scalars(
        select(Trial)
        .where(Trial.job_id == job.id, Trial.objective.is_not(None))
        .order_by(*_ranking(job_objective(job)))
        .limit(1)
    ).first()


def to_best(trial: Trial, objective: Objective, step: int | None = None) -> Best:
    """``step``: of the best evaluation, where the caller looked it up (``_best_steps``)."""
    assert trial.objective is not None
    return Best(trial=trial.number, config=trial.config, lr=float(trial.config["lr"]),
                val_loss=trial.val_loss, epoch=trial.best_epoch, step=step,
                objective=ObjectiveValue(metric=objective.metric, mode=objective.mode, value=trial.objective))


def best_of(session: Session, job: Job) -> Best | None:
    """The job's best trial as a Best, None while no trial has a value of its objective."""
    trial = best_trial(session, job)
    if trial is None:
        return None
    return to_best(trial, job_objective(job), _best_steps(session, [trial]).get(trial.id))


def to_job_public(job: Job, counts: TrialCounts, best: Best | None) -> JobPublic:
    return JobPublic(
        id=job.id, name=job.name, status=job.status, spec=job.spec,
        created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
        trial_counts=counts, total_trials=job.total_trials, best=best, error=job.error, owner=job.claimed_by,
        views=list(strategy_views(job.spec.get("strategy"))),
    )


def strategy_views(name: str | None) -> tuple[str, ...]:
    """What the job's strategy shows beyond its trials (a strategy this server no longer has: nothing)."""
    strategy = STRATEGIES.get(name or "")
    return strategy.views if strategy is not None else ()


def jobs_public(session: Session, jobs: Sequence[Job]) -> list[JobPublic]:
    # A finished job's counts and best never change again: read once, then from the cache (counting
    # 100,000 trials by status took 45 ms on PostgreSQL at every poll).
    def read_once(job: Job) -> tuple[TrialCounts, Best | None]:
        return derived(session, job, "counts_and_best", lambda _: _counts_and_bests(session, [job])[job.id])

    done = {j.id: read_once(j) for j in jobs if j.finished_at is not None}
    running = _counts_and_bests(session, [j for j in jobs if j.finished_at is None])
    return [to_job_public(j, *(done.get(j.id) or running[j.id])) for j in jobs]


def _counts_and_bests(session: Session, jobs: Sequence[Job]) -> dict[int, tuple[TrialCounts, Best | None]]:
    if not jobs:
        return {}
    counts = trial_counts(session, [j.id for j in jobs])
    bests = best_trials(session, jobs)
    return {j.id: (counts[j.id], bests.get(j.id)) for j in jobs}


def to_trial_public(t: Trial) -> TrialPublic:
    return TrialPublic(number=t.number, status=t.status, kind=t.kind, config=t.config, val_loss=t.val_loss,
                       objective=t.objective, best_epoch=t.best_epoch, epochs=t.epochs, started_at=t.started_at,
                       finished_at=t.finished_at, error=t.error, attempts=t.attempts, node=t.node, workers=t.workers)


# The config is selected as its stored JSON text and spliced into the answer unparsed.
TRIAL_COLUMNS = (Trial.number, Trial.status, Trial.kind, cast(Trial.config, Text).label("config_json"), Trial.val_loss,
                 Trial.objective, Trial.best_epoch, Trial.epochs, Trial.started_at, Trial.finished_at, Trial.error, Trial.attempts,
                 Trial.node, cast(Trial.workers, Text).label("workers_json"))


def iso(dt: datetime | None) -> str | None:
    """As pydantic writes an aware UTC datetime."""
    return None if dt is None else dt.isoformat().replace("+00:00", "Z")


def trial_json(row: Any) -> str:
    """A TrialPublic as JSON text, from a row of TRIAL_COLUMNS."""
    (number, status, kind, config_json, val_loss, objective, best_epoch, epochs, started, finished, error, attempts,
     node, workers_json) = row
    rest = json.dumps({"status": status, "kind": kind, "val_loss": val_loss, "objective": objective, "best_epoch": best_epoch,
                       "epochs": epochs,
                       "started_at": iso(started), "finished_at": iso(finished), "error": error,
                       "attempts": attempts, "node": node}, separators=(",", ":"))
    return f'{{"number":{int(number)},"config":{config_json},"workers":{workers_json or "null"},{rest[1:]}'


# The orders a job's trials can be listed in ("-" first: the reverse). "rank": best objective first.
TrialOrder = Literal["number", "-number", "rank", "-rank", "epochs", "-epochs", "status", "-status"]


def trials_page(session: Session, job: Job, limit: int, offset: int, status: str | None = None,
                order: TrialOrder = "number") -> tuple[list[str], int]:
    """A page of the job's trials as TrialPublic JSON texts, and how many there are in all."""
    where = [Trial.job_id == job.id]
    if status is not None:
        where.append(Trial.status == status)
    def count(_stamp: tuple[Any, ...]) -> int:
        return session.scalar(select(func.count()).select_from(Trial).where(*where)) or 0

    # A finished job's trials are counted once (20 ms at 100,000 on PostgreSQL).
    total = derived(session, job, f"count:{status}", count) if job.finished_at is not None else count(())
    key = order.lstrip("-")
    descending = order.startswith("-") != (key == "rank" and job_objective(job).mode == "max")
    column = {"number": Trial.number, "rank": Trial.objective, "epochs": Trial.epochs, "status": Trial.status}[key]
    first = (column.desc() if descending else column.asc()).nulls_last()
    tie = () if key == "number" else (Trial.number,)  # ties broken by number: pages never overlap
    query = select(*TRIAL_COLUMNS).where(*where).order_by(first, *tie).limit(limit).offset(offset)
    if key == "number" and status is None and offset and _numbers_dense(session, job, total):
        # Numbers 0..total-1, each once: the offset is a number, found in the index (an OFFSET
        # walks past every row before it: 110 ms for the last page of 100,000 on PostgreSQL).
        start = Trial.number <= total - 1 - offset if descending else Trial.number >= offset
        query = select(*TRIAL_COLUMNS).where(*where, start).order_by(first).limit(limit)
    # Plain rows straight to JSON: a page of 1,000 trials must not pay for 1,000 model objects.
    return [trial_json(row) for row in session.execute(query)], total


def _numbers_dense(session: Session, job: Job, total: int) -> bool:
    """Whether the job's trials are numbered 0..total-1 (as the runner numbers them)."""
    last = session.scalar(select(Trial.number).where(Trial.job_id == job.id).order_by(Trial.number.desc()).limit(1))
    return last is not None and last == total - 1


def trials_page_response(items_json: list[str], total: int) -> Response:
    return Response(f'{{"items":[{",".join(items_json)}],"total":{int(total)}}}', media_type="application/json")


def json_response(body: Any) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def best_detail(session: Session, job: Job, best: Best) -> BestDetail:
    """The best with its lr_interval and the best per optimizer, cached until the job's trials change.
    Both are read on the objective as a score (lower is better), so they hold for either direction."""
    from lrsearch.search.analysis import lr_interval, per_optimizer_best

    objective = job_objective(job)

    def compute(_stamp: tuple[Any, ...]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        # Streamed, keeping each optimizer's best row and the (lr, score) of the best's optimizer:
        # a 100,000-trial job's rows are never all in memory at once.
        same: list[tuple[float, float]] = []
        leaders: dict[str, dict[str, Any]] = {}
        for n, c, v, o, e in session.execute(
                select(Trial.number, cast(Trial.config, Text), Trial.val_loss, Trial.objective, Trial.best_epoch)
                .where(Trial.job_id == job.id, Trial.objective.is_not(None)).execution_options(yield_per=5000)):
            config = json.loads(c) if isinstance(c, str) else c
            row = {"number": n, "config": config, "val_loss": objective.score(o), "loss": v, "objective": o,
                   "best_epoch": e}
            optimizer = config.get("optimizer")
            if optimizer == best.config.get("optimizer"):
                same.append((config["lr"], row["val_loss"]))
            leader = leaders.get(optimizer)
            if row["val_loss"] is not None and math.isfinite(row["val_loss"]) and (
                    leader is None or (row["val_loss"], n) < (leader["val_loss"], leader["number"])):
                leaders[optimizer] = row  # per_optimizer_best's choice among these rows
        by_number = {r["number"]: r for r in leaders.values()}
        per_opt = {opt: {"trial": b["trial"], "lr": b["lr"], "val_loss": by_number[b["trial"]]["loss"],
                         "objective": by_number[b["trial"]]["objective"], "epoch": b.get("epoch")}
                   for opt, b in per_optimizer_best(list(leaders.values())).items()}
        assert best.objective is not None  # to_best's: a trained best always has one
        best_score = objective.score(best.objective.value)
        assert best_score is not None
        return lr_interval(same, best.lr, best_score), per_opt

    # Built around the best trial: a new best builds it again at once.
    interval, per_opt = derived(session, job, "best", compute, around=best.trial)
    tolerance = interval["tolerance"]
    return BestDetail(**best.model_dump(), lr_interval=LrInterval(
                          low=interval["low"], high=interval["high"], method=interval["method"],
                          tolerance=tolerance, metric=objective.metric),
                      per_optimizer={k: OptimizerBest(**v) for k, v in per_opt.items()})


# -- range tests ---------------------------------------------------------------------------------


def range_tests(session: Session, job: Job) -> list[RangeTestOptimizer]:
    """A job's range tests per optimizer: each finished test's curve and what they suggest
    together. Empty for a job whose strategy runs none (not looked for: no scan of its trials)."""
    if "range_tests" not in strategy_views(job.spec.get("strategy")):
        return []
    rows = list(session.execute(
        select(Trial.id, Trial.number, Trial.config, Trial.status, Trial.finished_at)
        .where(Trial.job_id == job.id, Trial.kind == TrialKind.RANGE_TEST).order_by(Trial.number)))
    if not rows:
        return []
    tests = [(tid, n, c, st) for tid, n, c, st, _ in rows]
    # A finished test's curve never changes again, so the tests' statuses stamp the answer (the
    # finish times too: a database made again under the same URL reuses the ids).
    stamp = tuple((tid, st, fin) for tid, _, _, st, fin in rows)
    return list(derived(session, job, "range_tests", lambda _: _range_tests(session, tests), stamp=lambda: stamp))


def _range_tests(session: Session, tests: list[tuple[int, int, dict[str, Any], str]]) -> list[RangeTestOptimizer]:
    from lrsearch.search.range_test import denoise, summarize

    finished = [tid for tid, _, _, st in tests if st in ("completed", "diverged")]
    points: dict[int, list[tuple[float, float]]] = {tid: [] for tid in finished}
    if finished:
        for tid, lr, loss in session.execute(
                select(RangeTestPoint.trial_id, RangeTestPoint.lr, RangeTestPoint.loss)
                .where(RangeTestPoint.trial_id.in_(finished)).order_by(RangeTestPoint.trial_id, RangeTestPoint.step)):
            points[tid].append((lr, loss))
    by_optimizer: dict[str, RangeTestOptimizer] = {}
    runs: dict[str, list[tuple[float, list[float], list[float]]]] = {}
    for tid, number, config, status in tests:
        entry = by_optimizer.setdefault(config["optimizer"], RangeTestOptimizer(
            optimizer=config["optimizer"], suggestion=None, curves=[]))
        if tid not in points:
            continue
        lrs, losses = [p[0] for p in points[tid]], [p[1] for p in points[tid]]
        entry.curves.append(RangeTestCurve(trial=number, repeat=int(config[RANGE_TEST_KEY].get("repeat", 0)),
                                           status=status, lrs=lrs, losses=losses, smoothed=denoise(losses)))
        runs.setdefault(config["optimizer"], []).append((float(config["lr"]), lrs, losses))
    for optimizer, curves in runs.items():
        try:
            summary = summarize(curves)
        except ValueError as exc:  # a curve no reading can use (stored by an older version): no suggestion
            log.warning("range tests of %s cannot be summarised: %s", optimizer, exc)
            summary = None
        if summary is not None:
            by_optimizer[optimizer].suggestion = RangeTestSummary(**summary)
    return list(by_optimizer.values())


def suggestion_best(session: Session, job: Job, finder: list[RangeTestOptimizer]) -> BestDetail | None:
    """For a job of range tests with nothing trained: the suggestion of the optimizer whose tests
    reached the lowest loss, as a Best without a validation loss. None without any suggestion."""
    known = [f for f in finder if f.suggestion is not None and f.curves]
    if not known:
        return None
    pick = min(known, key=lambda f: (f.suggestion.min_loss is None, f.suggestion.min_loss or 0.0))  # type: ignore[union-attr]  # known has suggestions only
    assert pick.suggestion is not None
    trial = session.scalar(select(Trial).where(Trial.job_id == job.id, Trial.number == pick.curves[0].trial))
    assert trial is not None and trial.kind == TrialKind.RANGE_TEST
    config = training_config(trial.config) | {"lr": pick.suggestion.lr}
    return BestDetail(trial=trial.number, config=config, lr=pick.suggestion.lr, val_loss=None, epoch=None)


def _configs(session: Session, job: Job) -> dict[int, dict[str, Any]]:
    return {n: c for n, c in session.execute(select(Trial.number, Trial.config).where(Trial.job_id == job.id))}


class _JobConfigs(Mapping[int, dict[str, Any]]):
    """Every trial's config by number, read from the store only if asked for: a strategy that does
    not replay its best never makes ``best`` read a 100,000-trial job's configs."""

    def __init__(self, session: Session, job: Job) -> None:
        self._session, self._job = session, job
        self._configs: dict[int, dict[str, Any]] | None = None

    def _all(self) -> dict[int, dict[str, Any]]:
        if self._configs is None:
            self._configs = _configs(self._session, self._job)
        return self._configs

    def __getitem__(self, number: int) -> dict[str, Any]:
        return self._all()[number]

    def __iter__(self) -> Iterator[int]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def with_replay(session: Session, job: Job, best: BestDetail) -> BestDetail:
    """The best as its strategy replays it from scratch, when its own config does not (pbt: the
    best member's whole trajectory as a piecewise schedule)."""
    strategy = STRATEGIES.get(job.spec.get("strategy") or "")
    if strategy is None:
        return best
    # Steps per evaluation in a step job: a piecewise schedule counts in the schedule's unit.
    unit = (job.spec.get("eval_every") or 1) if job.spec.get("steps") is not None else 1
    replay = strategy.replay(_JobConfigs(session, job), best.trial, unit)
    if replay is None:
        return best
    config, path = replay
    return best.model_copy(update={"config": config, "lr": config["lr"], "trajectory": path})


def population_of(session: Session, job: Job) -> Population | None:
    """A pbt job's members and exploits (None for a job whose strategy has no population)."""
    from lrsearch.search.strategies._pbt import exploits, population

    if "population" not in strategy_views(job.spec.get("strategy")):
        return None
    configs = _configs(session, job)
    return Population.model_validate({"members": population(configs), "exploits": exploits(configs)})


def with_suggestions(best: BestDetail, finder: list[RangeTestOptimizer]) -> BestDetail:
    summaries = {f.optimizer: f.suggestion for f in finder if f.suggestion is not None}
    return best.model_copy(update={"suggestions": {o: s.lr for o, s in summaries.items()},
                                   "range_test": summaries})
