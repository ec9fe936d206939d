"""Trials of a job and their per-epoch metrics."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query
from sqlalchemy import func, select

from service.api import API_PREFIX
from service.api.deps import LimitQuery, OffsetQuery, SessionDep
from service.api.jobs import JobId, get_job_or_404
from service.crud import to_metric_public, to_trial_public
from service.models import Metric, Trial
from service.schemas import Items, MetricPublic, Page, TrialPublic

router = APIRouter(prefix=f"{API_PREFIX}/jobs/{{job_id}}/trials", tags=["trials"])

TrialStatus = Literal["queued", "running", "completed", "pruned", "diverged", "failed", "cancelled"]


@router.get("", response_model=Page[TrialPublic])
def list_trials(job_id: JobId, session: SessionDep, limit: LimitQuery = 1000, offset: OffsetQuery = 0,
                status: Annotated[TrialStatus | None, Query(description="only trials in this status")] = None
                ) -> Page[TrialPublic]:
    get_job_or_404(session, job_id)
    where = [Trial.job_id == job_id]
    if status is not None:
        where.append(Trial.status == status)
    total = session.scalar(select(func.count()).select_from(Trial).where(*where)) or 0
    trials = session.scalars(select(Trial).where(*where).order_by(Trial.number).limit(limit).offset(offset))
    return Page[TrialPublic](items=[to_trial_public(t) for t in trials], total=total)


@router.get("/{number}/metrics", response_model=Items[MetricPublic])
def list_metrics(job_id: JobId, number: Annotated[int, Path(ge=0, le=2**31 - 1)],
                 session: SessionDep) -> Items[MetricPublic]:
    get_job_or_404(session, job_id)
    trial_id = session.scalar(select(Trial.id).where(Trial.job_id == job_id, Trial.number == number))
    if trial_id is None:
        raise HTTPException(404, f"job {job_id} has no trial {number}")
    metrics = session.scalars(select(Metric).where(Metric.trial_id == trial_id).order_by(Metric.epoch))
    return Items[MetricPublic](items=[to_metric_public(m) for m in metrics])
