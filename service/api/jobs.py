"""Jobs: submit, list, read, cancel, best."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from fastapi.responses import JSONResponse
from pydantic import WrapValidator
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lrsearch.search import SpecError
from lrsearch.service.api import API_PREFIX
from lrsearch.service.api.deps import LimitQuery, OffsetQuery, RunnerDep, SessionDep, SettingsDep
from lrsearch.service.crud import (
    best_detail,
    best_of,
    job_objective,
    jobs_public,
    population_of,
    range_tests,
    suggestion_best,
    to_trial_public,
    with_replay,
    with_suggestions,
)
from lrsearch.service.derived import derived
from lrsearch.service.export import to_csv, trial_rows
from lrsearch.service.models import Job, Trial, utcnow
from lrsearch.service.runner import trial_resources
from lrsearch.service.schemas import (
    BestDetail,
    Items,
    JobPublic,
    JobSpec,
    Page,
    Population,
    RangeTestOptimizer,
    Transfer,
)
from lrsearch.service.validation import check_submission
from lrsearch.workers.registry import workload_names

router = APIRouter(prefix=f"{API_PREFIX}/jobs", tags=["jobs"])

JobId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the job's id")]


def get_job_or_404(session: SessionDep, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise HTTPException(404, f"job {job_id} not found")
    return job


def _as_sent(body: Any, _parse: Any) -> Any:
    return body


# The body as sent, documented as a JobSpec: check_submission parses it together with the checks of
# its values, so that mistakes in both come back in one 422.
SubmittedSpec = Annotated[JobSpec, WrapValidator(_as_sent)]


@router.post("", status_code=201, response_model=JobPublic)
def submit_job(body: SubmittedSpec, session: SessionDep, settings: SettingsDep, runner: RunnerDep) -> JobPublic:
    # Everything is checked before anything is written: a rejected spec leaves no trace.
    checked = check_submission(body, settings, workload_names())
    if runner is not None:
        if (unplaceable := runner.executor.unplaceable(trial_resources(checked.spec),
                                                       checked.spec.resources.workers)) is not None:
            raise SpecError(("resources", unplaceable[0]), unplaceable[1])
    stored = checked.spec.model_dump(mode="json")
    stored["name"] = checked.spec.name or f"{checked.spec.strategy}-{checked.spec.workload}"
    job = Job(name=stored["name"], status="queued", spec=stored, strategy_state={},
              total_trials=checked.total_trials)
    session.add(job)
    session.commit()
    if runner is not None:
        runner.wake()
    return jobs_public(session, [job])[0]


@router.get("", response_model=Page[JobPublic])
def list_jobs(session: SessionDep, limit: LimitQuery = 1000, offset: OffsetQuery = 0) -> Page[JobPublic]:
    total = session.scalar(select(func.count()).select_from(Job)) or 0
    jobs = list(session.scalars(select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)))
    return Page[JobPublic](items=jobs_public(session, jobs), total=total)


@router.get("/{job_id}", response_model=JobPublic)
def read_job(job_id: JobId, session: SessionDep) -> JobPublic:
    return jobs_public(session, [get_job_or_404(session, job_id)])[0]


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: JobId, session: SessionDep, runner: RunnerDep) -> JobPublic:
    job = get_job_or_404(session, job_id)
    if job.status in ("completed", "cancelled", "failed"):
        return jobs_public(session, [job])[0]
    # A queued job is cancelled at once; a running one once its trials stop.
    session.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                    .values(status="cancelled", cancel_requested=True, finished_at=utcnow()))
    session.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                    .values(cancel_requested=True))
    session.commit()
    if runner is not None:
        runner.cancel(job_id)
    session.refresh(job)
    return jobs_public(session, [job])[0]


@router.get("/{job_id}/best", response_model=BestDetail)
def read_best(job_id: JobId, session: SessionDep,
              batch_size: Annotated[int | None, Query(ge=1, le=1_000_000, description=(
                  "scale the learning rate from the job's batch size to this one"))] = None) -> BestDetail:
    job = get_job_or_404(session, job_id)
    # A finished job's best never changes again: built once, then one query a call (the job's row).
    best = (derived(session, job, "best_answer", lambda _: _best_answer(session, job)) if job.finished_at is not None
            else _best_answer(session, job))
    if batch_size is not None:
        from lrsearch.search.analysis import transfer_lr
        from lrsearch.workers.registry import workload_batch_size

        workload = job.spec["workload"]
        try:
            # The batch the job trained with (stored since batch_size is part of the spec), else the workload's.
            from_batch_size = job.spec.get("batch_size") or workload_batch_size(workload)
        except Exception as exc:  # a plug-in uninstalled since the job ran, or one that fails to load
            raise HTTPException(409, f"batch_size: the batch size of the job's workload {workload!r} is unknown "
                                     f"on this server ({exc}); query without batch_size") from None
        moved = transfer_lr(best.lr, best.config["optimizer"], from_batch_size, batch_size)
        best = best.model_copy(update={"lr": moved["lr"], "transfer": Transfer(
            rule=moved["rule"], from_lr=best.lr, from_batch_size=moved["from_batch_size"],
            to_batch_size=moved["to_batch_size"])})
    return best


def _best_answer(session: Session, job: Job) -> BestDetail:
    """The best trained trial (with its lr interval and the best per optimizer), else what the
    job's range tests suggest; raises a 404 while there is neither."""
    finder = range_tests(session, job)
    found = best_of(session, job)
    if found is not None:
        best = best_detail(session, job, found)
    else:
        suggested = suggestion_best(session, job, finder)  # a range test's suggestion, nothing trained yet
        if suggested is None:
            raise HTTPException(404, f"job {job.id} has no trial with a value of its objective "
                                     f"({job_objective(job).metric}) yet")
        best = suggested
    if finder:
        best = with_suggestions(best, finder)
    return with_replay(session, job, best)


@router.get("/{job_id}/range_test", response_model=Items[RangeTestOptimizer])
def read_range_tests(job_id: JobId, session: SessionDep) -> Items[RangeTestOptimizer]:
    """A range_test or auto job's LR range tests per optimizer: the curves (one per seed) and the
    suggestion they make together. Empty items for other strategies."""
    return Items[RangeTestOptimizer](items=range_tests(session, get_job_or_404(session, job_id)))


@router.get("/{job_id}/population", response_model=Population)
def read_population(job_id: JobId, session: SessionDep) -> Population:
    """A pbt job's members (each one's segments and rates) and every exploit: which member copied
    which, at which evaluation, the rate before and after. 404 for a job whose strategy has none."""
    population = population_of(session, get_job_or_404(session, job_id))
    if population is None:
        raise HTTPException(404, f"job {job_id}'s strategy trains no population")
    return population


@router.get("/{job_id}/export", response_model=None)
def export_job(job_id: JobId, session: SessionDep,
               format: Annotated[Literal["csv", "json"], Query(description="csv or json")] = "json"
               ) -> Response:
    """A row per trial: its number, status, val_loss, epochs and every config value."""
    job = get_job_or_404(session, job_id)
    trials = [to_trial_public(t).model_dump(mode="json") for t in
              session.scalars(select(Trial).where(Trial.job_id == job_id).order_by(Trial.number))]
    filename = f"lrsearch-job-{job.id}.{format}"
    headers = {"content-disposition": f'attachment; filename="{filename}"'}
    if format == "csv":
        return Response(to_csv(trials), media_type="text/csv; charset=utf-8", headers=headers)
    header, rows = trial_rows(trials)
    return JSONResponse({"job": job.id, "columns": header, "rows": rows}, headers=headers)


__all__ = ["router", "JobId", "get_job_or_404"]
