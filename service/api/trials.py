"""Trials of a job and their per-epoch metrics."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from sqlalchemy import select

from lrsearch.service.api import API_PREFIX
from lrsearch.service.api.deps import LimitQuery, OffsetQuery, SessionDep
from lrsearch.service.api.jobs import JobId, get_job_or_404
from lrsearch.service.crud import TrialOrder, json_response, trials_page, trials_page_response
from lrsearch.service.models import Metric, Trial
from lrsearch.service.schemas import Items, MetricPublic, Page, TrialPublic

router = APIRouter(prefix=f"{API_PREFIX}/jobs/{{job_id}}/trials", tags=["trials"])

TrialStatus = Literal["queued", "running", "completed", "pruned", "diverged", "failed", "cancelled"]


@router.get("", response_model=Page[TrialPublic])
def list_trials(job_id: JobId, session: SessionDep, limit: LimitQuery = 1000, offset: OffsetQuery = 0,
                status: Annotated[TrialStatus | None, Query(description="only trials in this status")] = None,
                order: Annotated[TrialOrder, Query(description=(
                    "number, rank (the best objective first), epochs or status; '-' before it reverses"))] = "number",
                ) -> Response:
    job = get_job_or_404(session, job_id)
    return trials_page_response(*trials_page(session, job, limit, offset, status, order))


@router.get("/{number}/metrics", response_model=Items[MetricPublic])
def list_metrics(job_id: JobId, number: Annotated[int, Path(ge=0, le=2**31 - 1)],
                 session: SessionDep) -> Response:
    get_job_or_404(session, job_id)
    trial_id = session.scalar(select(Trial.id).where(Trial.job_id == job_id, Trial.number == number))
    if trial_id is None:
        raise HTTPException(404, f"job {job_id} has no trial {number}")
    rows = session.execute(select(Metric.epoch, Metric.step, Metric.train_loss, Metric.val_loss,
                                  Metric.val_accuracy, Metric.lr, Metric.extra)
                           .where(Metric.trial_id == trial_id).order_by(Metric.epoch))
    return json_response({"items": [metric_item(row) for row in rows]})


def metric_item(row: Any) -> dict[str, Any]:
    """A metric row as the API answers it: the workload's other metrics as keys of their own."""
    item = row._asdict()
    extra = item.pop("extra") or {}
    return item | {k: v for k, v in extra.items() if k not in item}
