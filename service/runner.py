"""The job runner: claims queued jobs from the store and runs each as a JobExecution
(service/job_execution.py), whose trials run on an Executor (workers/executor.py).

A job is owned through a lease (``claimed_by`` + ``heartbeat_at``): a lease that is not renewed
can be taken over, by this service after a restart or by another replica.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from lrsearch.service.checkpoints import CheckpointStore
from lrsearch.service.config import Settings
from lrsearch.service.ingest import EpochRow, StoreWriter
from lrsearch.service.job_execution import JobExecution
from lrsearch.service.models import Job, utcnow
from lrsearch.service.observability import ServiceMetrics
from lrsearch.service.schemas import JobSpec
from lrsearch.workers.executor import Executor, TrialResources

log = logging.getLogger(__name__)


def trial_resources(spec: JobSpec) -> TrialResources:
    """What one worker of the job's trials asks for."""
    return TrialResources(cpu=spec.resources.cpu, gpu=spec.resources.gpu)


class JobRunner:
    """Claims jobs from the store and runs them; one per service process."""

    def __init__(self, sessions: sessionmaker[Session], executor: Executor, settings: Settings,
                 metrics: ServiceMetrics | None = None) -> None:
        self.sessions = sessions
        self.metrics = metrics or ServiceMetrics()
        self.checkpoints = CheckpointStore(Path(settings.data_dir) / "checkpoints")
        self.writer = StoreWriter(sessions)  # every write of every job, in one group commit
        self.executor = executor
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._executions: dict[int, JobExecution] = {}
        self._renewed_at = utcnow() - timedelta(days=1)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)

    def workload_names(self) -> list[str]:
        from lrsearch.workers.registry import workload_names

        return workload_names()

    def start(self) -> None:
        self._thread.start()

    def record(self, row: EpochRow) -> Future[bool]:
        """Queue a metric row and its trial's running best for the next group commit; the future is
        done once it is committed. Idempotent: an evaluation already stored is not stored again."""
        done = self.writer.submit(row)
        counter = self.metrics.epochs_trained
        done.add_done_callback(lambda f: counter.inc() if not f.exception() and f.result() else None)
        return done

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: int) -> None:
        execution = self._executions.get(job_id)
        if execution is not None:
            execution.request_cancel()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop trials at their next epoch and hand the leases back, so a restart resumes at once."""
        self._stop.set()
        self._wake.set()
        # The loop first: a tick in progress may still claim a job and start its execution.
        if self._thread.ident is not None:
            self._thread.join(timeout)
        for execution in list(self._executions.values()):
            execution.shutdown()
        for execution in list(self._executions.values()):
            if execution.thread.ident is not None:  # started (a loop that timed out may not have)
                execution.thread.join(timeout)
        self.writer.stop()
        with self.sessions.begin() as s:
            s.execute(update(Job).where(Job.claimed_by == self.owner, Job.status == "running")
                      .values(claimed_by=None, heartbeat_at=None))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - e.g. the database is briefly unreachable; try again
                log.exception("job runner tick failed")
            self._wake.wait(self.settings.poll_interval)
            self._wake.clear()

    def _tick(self) -> None:
        now = utcnow()
        for job_id, execution in list(self._executions.items()):
            if not execution.is_alive():
                del self._executions[job_id]
        with self.sessions.begin() as s:
            # Renew the leases of the jobs we are driving (only those: a job whose execution ended
            # without finishing lets its lease lapse, so it is resumed), a few times per lease: a
            # write at every tick would contend with the trials' writes. See which were cancelled.
            if self._executions and now - self._renewed_at >= timedelta(seconds=self.settings.lease_seconds / 5):
                s.execute(update(Job).where(Job.claimed_by == self.owner, Job.status == "running",
                                            Job.id.in_(list(self._executions)))
                          .values(heartbeat_at=now))
                self._renewed_at = now
            cancel_ids = list(s.scalars(select(Job.id).where(
                Job.claimed_by == self.owner, Job.status == "running", Job.cancel_requested.is_(True))))
        for job_id in cancel_ids:
            self.cancel(job_id)
        free = self.settings.max_running_jobs - len(self._executions)
        if free <= 0 or self._stop.is_set():
            return
        stale = now - timedelta(seconds=self.settings.lease_seconds)
        claimable = or_(Job.status == "queued",
                        (Job.status == "running") & or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale))
        with self.sessions() as s:
            candidates = list(s.scalars(select(Job.id).where(claimable).order_by(Job.id).limit(free)))
        for job_id in candidates:
            with self.sessions.begin() as s:
                # Claim with a conditional update: of several replicas, exactly one wins.
                claimed = cast("CursorResult[Any]", s.execute(  # an UPDATE: a cursor result, with rowcount
                    update(Job).where(Job.id == job_id, claimable)
                    .values(status="running", claimed_by=self.owner, heartbeat_at=now)
                )).rowcount == 1
                if claimed:
                    job = s.get(Job, job_id)
                    assert job is not None
                    if job.started_at is None:
                        job.started_at = now
            if claimed:
                log.info("claimed job %s", job_id)
                execution = JobExecution(self, job_id)
                self._executions[job_id] = execution
                execution.start()
