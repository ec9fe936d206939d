"""What the job page's plots need of a big job, built on the server: a sample of its trials (the
best ones, the diverged ones and an even spread of the rest), the best-so-far line, and its
per-epoch curves aggregated over bands of the learning rate. A page with 10,000 trials loads and
polls this, not every trial and metric row.

The answer is cached per job until the job's trials change (service/derived.py: while a job runs,
a summary that was costly to build is reused for a while).
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from lrsearch.search import TrialKind
from lrsearch.service.crud import job_objective
from lrsearch.service.derived import derived
from lrsearch.service.ingest import stored_value
from lrsearch.service.models import Job, Metric, Trial

# Trials the sample holds at most (of them the best BEST_POINTS); parallel coordinates draw PARCOORDS_POINTS.
SAMPLE_POINTS = 800
BEST_POINTS = 200
DIVERGED_POINTS = 80
PARCOORDS_POINTS = 250
LR_BANDS = 12
def plot_number(x: Any, digits: int = 5) -> float | None:
    """A finite float at ``digits`` significant digits (plenty for a plot, fewer bytes); else None."""
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else None


def summary(session: Session, job: Job) -> dict[str, Any]:
    """The job's summary, with ``stamp`` (its version: a poll that names it gets ``unchanged``)."""

    def build(stamp: tuple[Any, ...]) -> dict[str, Any]:
        return {**_build(session, job), "stamp": hashlib.sha256(repr(stamp).encode()).hexdigest()[:16]}

    return derived(session, job, "summary", build)


def _build(session: Session, job: Job) -> dict[str, Any]:
    objective = job_objective(job)
    trained = [k.value for k in TrialKind if k.evaluates]
    trials = [{"number": n, "status": st, "config": json.loads(c) if isinstance(c, str) else c, "objective": ob,
               "val_loss": vl, "score": objective.score(ob)}
              for n, st, c, ob, vl in session.execute(
                  select(Trial.number, Trial.status, cast(Trial.config, Text), Trial.objective, Trial.val_loss
                         ).where(Trial.job_id == job.id, Trial.kind.in_(trained)).order_by(Trial.number))]
    sample = _sample(trials)
    return {"trials": len(trials), "sampled": len(sample) < len(trials),
            "points": _points(sample), "parcoords": _parcoords(sample),
            "best_so_far": _best_so_far(trials), "bands": _bands(session, job, trials)}


def _spread(items: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` of ``items`` evenly spaced (all of them when there are no more)."""
    if len(items) <= count:
        return items
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def _sample(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every trial of a small job; of a big one the best, some diverged ones and a spread of the rest."""
    if len(trials) <= SAMPLE_POINTS:
        return trials
    scored = sorted((t for t in trials if t["score"] is not None), key=lambda t: t["score"])
    chosen = {t["number"]: t for t in scored[:BEST_POINTS]}
    for t in _spread([t for t in trials if t["status"] == "diverged"], DIVERGED_POINTS):
        chosen.setdefault(t["number"], t)
    rest = [t for t in trials if t["number"] not in chosen]
    for t in _spread(rest, SAMPLE_POINTS - len(chosen)):
        chosen[t["number"]] = t
    return sorted(chosen.values(), key=lambda t: t["number"])


def _codes(values: list[Any]) -> tuple[list[Any], list[int]]:
    names = sorted({str(v) for v in values})
    index = {n: i for i, n in enumerate(names)}
    return names, [index[str(v)] for v in values]


def _points(sample: list[dict[str, Any]]) -> dict[str, Any]:
    """The sample as columns; status, optimizer and schedule as indices into their name lists."""
    statuses, status = _codes([t["status"] for t in sample])
    optimizers, optimizer = _codes([t["config"].get("optimizer") for t in sample])
    schedules, schedule = _codes([t["config"].get("schedule") for t in sample])
    return {"number": [t["number"] for t in sample], "lr": [plot_number(t["config"].get("lr")) for t in sample],
            "objective": [plot_number(t["objective"]) for t in sample],
            "statuses": statuses, "status": status, "optimizers": optimizers, "optimizer": optimizer,
            "schedules": schedules, "schedule": schedule}


def _parcoords(sample: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The points parallel coordinates draw (the best and a spread of the rest, as indices into
    the points), with what only they show: warmup and val_loss."""
    usable = [i for i, t in enumerate(sample) if t["score"] is not None and t["status"] != "diverged"]
    if len(usable) > PARCOORDS_POINTS:
        best = sorted(usable, key=lambda i: sample[i]["score"])[:PARCOORDS_POINTS // 5]
        chosen = set(best)
        rest = [i for i in usable if i not in chosen]
        step = len(rest) / (PARCOORDS_POINTS - len(best))
        usable = sorted(best + [rest[int(k * step)] for k in range(PARCOORDS_POINTS - len(best))])
    return {"index": usable, "warmup": [plot_number(sample[i]["config"].get("warmup_fraction")) for i in usable],
            "val_loss": [plot_number(sample[i]["val_loss"]) for i in usable]}


def _best_so_far(trials: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Where the best so far improved (trial number, objective), and the last trial it holds at."""
    x: list[int] = []
    y: list[float | None] = []
    best: dict[str, Any] | None = None
    for t in trials:
        if t["score"] is not None and (best is None or t["score"] < best["score"]):
            best = t
            x.append(t["number"])
            y.append(plot_number(t["objective"]))
    if best is not None and trials and x[-1] != trials[-1]["number"]:
        x.append(trials[-1]["number"])
        y.append(plot_number(best["objective"]))
    return {"x": x, "y": y}


def _quantiles(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """The 10th, 50th and 90th percentile."""
    if not values:
        return None, None, None
    values.sort()
    last = len(values) - 1
    return tuple(plot_number(values[round(q * last)]) for q in (0.1, 0.5, 0.9))  # type: ignore[return-value]


def _bands(session: Session, job: Job, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Per band of log10(lr) and evaluation: the 10/50/90th percentiles of the objective, the
    training loss and the lr over the band's trials."""
    logs = {t["number"]: math.log10(t["config"]["lr"]) for t in trials
            if isinstance(t["config"].get("lr"), int | float) and t["config"]["lr"] > 0}
    if not logs:
        return {"lo": None, "hi": None, "items": []}
    lo, hi = min(logs.values()), max(logs.values())
    width = (hi - lo) / LR_BANDS or 1.0
    band_of = {n: min(LR_BANDS - 1, int((v - lo) / width)) for n, v in logs.items()}
    metric = job_objective(job).metric
    series: dict[tuple[int, int], tuple[list[float], list[float], list[float]]] = {}
    counts: dict[int, set[int]] = {}
    for number, epoch, train, val, acc, extra, lr in session.execute(
            select(Trial.number, Metric.epoch, Metric.train_loss, Metric.val_loss, Metric.val_accuracy,
                   Metric.extra, Metric.lr).join(Trial, Trial.id == Metric.trial_id).where(Trial.job_id == job.id)):
        band = band_of.get(number)
        if band is None:
            continue
        counts.setdefault(band, set()).add(number)
        vals, trains, lrs = series.setdefault((band, epoch), ([], [], []))
        value = stored_value(metric, val, acc, extra)
        if value is not None and math.isfinite(value):
            vals.append(value)
        if train is not None and math.isfinite(train):
            trains.append(train)
        lrs.append(lr)
    items = []
    for band in sorted(counts):
        epochs = sorted(e for b, e in series if b == band)
        item: dict[str, Any] = {"band": band, "lo": plot_number(10 ** (lo + band * width)),
                                "hi": plot_number(10 ** (lo + (band + 1) * width)), "trials": len(counts[band]),
                                "epoch": epochs}
        for name, index in (("val", 0), ("train", 1), ("lr", 2)):
            q = [_quantiles(series[(band, e)][index]) for e in epochs]
            item[name] = {"p10": [a for a, _, _ in q], "p50": [b for _, b, _ in q], "p90": [c for _, _, c in q]}
        items.append(item)
    return {"lo": plot_number(10 ** lo), "hi": plot_number(10 ** hi), "items": items}
