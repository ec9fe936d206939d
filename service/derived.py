"""Answers derived from all of a job's trials (its best's lr interval, the dashboard's summary of a
big job), cached per (database, job, answer) until the job's stamp changes.

A finished job's end stamps it: its trials never change again, and its answers are read once.
A running job's stamp is an aggregate over its trials (tens of milliseconds at 100,000 of them),
and it changes at every trial's end: an answer that was costly to build is reused for a while
(REUSE_FACTOR times what it cost, at least MIN_REUSE_SECONDS) without reading the stamp, so a page
or a client polling a big running job never holds a core of the service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from lrsearch.service.models import Job, Trial

REUSE_FACTOR = 10.0
MIN_REUSE_SECONDS = 3.0
MAX_ENTRIES = 512

T = TypeVar("T")


@dataclass
class _Entry:
    stamp: tuple[Any, ...]
    around: Hashable  # what else the answer was built around (the best trial, say)
    value: Any
    built_at: float  # or when its stamp was last found unchanged
    cost: float


_cache: dict[tuple[str, int, str], _Entry] = {}


def job_stamp(session: Session, job: Job) -> tuple[Any, ...]:
    """Changes whenever a job's trials change; a finished job's end stamps it."""
    if job.finished_at is not None:
        return (job.status, job.finished_at.isoformat())
    count, epochs, finished = session.execute(
        select(func.count(), func.sum(Trial.epochs), func.max(Trial.finished_at)).where(Trial.job_id == job.id)).one()
    return (job.status, count, epochs, finished.isoformat() if finished is not None else None)


def derived(session: Session, job: Job, what: str, compute: Callable[[tuple[Any, ...]], T], *,
            around: Hashable = None, stamp: Callable[[], tuple[Any, ...]] | None = None) -> T:
    """``compute(stamp)``, or the answer it gave for the same stamp and ``around``. ``stamp``
    replaces the job's own (for an answer that depends on fewer rows)."""
    key = (str(session.get_bind().engine.url), job.id, what)
    hit = _cache.get(key)
    now = time.monotonic()
    if (hit is not None and hit.around == around and job.finished_at is None and stamp is None
            and now - hit.built_at < max(MIN_REUSE_SECONDS, REUSE_FACTOR * hit.cost)):
        return hit.value
    current = stamp() if stamp is not None else job_stamp(session, job)
    if hit is not None and hit.around == around and hit.stamp == current:
        hit.built_at = now  # still what it would build: reused for another while
        return hit.value
    value = compute(current)
    if len(_cache) > MAX_ENTRIES:
        _cache.clear()
    _cache[key] = _Entry(current, around, value, now, time.monotonic() - now)
    return value
