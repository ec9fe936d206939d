"""The job runner: claims queued jobs, asks search/ for candidates, runs them on Ray, stores every result.

Every state change is committed to the store as it happens, so a service that stops (or dies)
and starts again resumes its jobs: finished trials are replayed into the strategy, and trials
that were running are re-run with the same number and config. A job is owned through a lease
(``claimed_by`` + ``heartbeat_at``): a lease that is not renewed can be taken over.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lrsearch.search import WAIT, SpecError, StrategySpec, TrialOutcome, is_range_test, make_strategy
from lrsearch.service.checkpoints import CheckpointStore
from lrsearch.service.config import Settings
from lrsearch.service.db import run_tx
from lrsearch.service.ingest import EpochRow, MetricWriter, epoch_row, stored_value
from lrsearch.service.models import FINISHED_TRIAL_STATUSES, Job, Metric, Trial, utcnow
from lrsearch.service.observability import ServiceMetrics
from lrsearch.service.schemas import JobSpec
from lrsearch.service.validation import check_job_spec, make_stopper, objective_of
from lrsearch.workers.errors import readable_error
from lrsearch.workers.ray_executor import RayExecutor, TrialResources, WorkerLost

log = logging.getLogger(__name__)


def trial_resources(spec: JobSpec) -> TrialResources:
    """What one trial of the job asks Ray for."""
    return TrialResources(cpu=spec.resources.cpu, gpu=spec.resources.gpu)


@dataclass
class TrialItem:
    id: int
    number: int
    config: dict[str, Any]
    resume: bool = False  # it ran before (service restart): continue from its checkpoint


class JobExecution:
    """Drives one job: ``max_concurrent`` slot threads, each taking the next candidate as it frees up."""

    def __init__(self, runner: JobRunner, job_id: int) -> None:
        self.runner = runner
        self.job_id = job_id
        self.sessions: sessionmaker[Session] = runner.sessions
        self.executor = runner.executor
        self._lock = threading.Lock()
        # Signalled when a trial ends (or the job stops): a strategy that answered WAIT asks again.
        self._trial_ended = threading.Condition(self._lock)
        self._in_flight = 0  # trials handed to a slot and not yet ended
        self._pending: deque[TrialItem] = deque()
        self._running_keys: set[str] = set()
        self._exhausted = False
        self.cancelled = False
        self.shutting_down = False
        self._slot_error: Exception | None = None
        self.thread = threading.Thread(target=self._run, name=f"job-{job_id}", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def request_cancel(self) -> None:
        self.cancelled = True
        self._stop_running()

    def shutdown(self) -> None:
        self.shutting_down = True
        self._stop_running()

    def _stop_running(self) -> None:
        with self._lock:
            keys = list(self._running_keys)
            self._trial_ended.notify_all()
        for key in keys:
            self.executor.stop(key)

    def _run(self) -> None:
        try:
            self._prepare()
            slots = [threading.Thread(target=self._slot, name=f"job-{self.job_id}-slot-{i}", daemon=True)
                     for i in range(self.spec.max_concurrent)]
            for t in slots:
                t.start()
            for t in slots:
                t.join()
            if self._slot_error is not None:
                raise self._slot_error
            if not self.shutting_down:
                self._finish()
        except (OperationalError, InterfaceError):
            # The database went away for longer than run_tx waits: hand the job back (its lease
            # lapses) instead of failing it; this or another replica resumes it.
            log.exception("job %s: database unavailable; releasing the job", self.job_id)
            self.shutdown()
        except Exception as exc:  # an error of the system, not of a trial: the job fails, visibly
            log.exception("job %s failed", self.job_id)
            with self.sessions.begin() as s:
                job = s.get(Job, self.job_id)
                if job is not None:
                    job.status, job.error, job.finished_at = "failed", f"{type(exc).__name__}: {exc}", utcnow()

    # -- resume ----------------------------------------------------------------------------
    def _prepare(self) -> None:
        with self.sessions.begin() as s:
            job = s.get(Job, self.job_id)
            assert job is not None
            self.spec = JobSpec.model_validate(job.spec)
            try:
                checked = check_job_spec(self.spec, self.runner.settings, self.runner.workload_names(), new_job=False)
            except SpecError as exc:
                raise RuntimeError(f"the spec is no longer valid on this server: {exc}") from exc
            self.strategy_spec: StrategySpec = checked.strategy_spec
            self.strategy = make_strategy(self.spec.strategy, self.strategy_spec)
            self.strategy.load_state_dict(job.strategy_state or {})
            self.stopper = make_stopper(self.spec)
            # Strategies and rules minimise: they hear the objective as a score (negated for max).
            self.objective = objective_of(self.spec)
            trials = list(s.scalars(select(Trial).where(Trial.job_id == self.job_id).order_by(Trial.number)))
            finished_ids = [t.id for t in trials if t.status in FINISHED_TRIAL_STATUSES]
            curves: dict[int, list[float | None]] = {i: [] for i in finished_ids}
            # A range test's curve is (lr, batch loss) per step; a training's, val_loss per epoch.
            points: dict[int, list[tuple[float, float]]] = {
                t.id: [] for t in trials if t.id in curves and is_range_test(t.config)}
            if finished_ids:
                for trial_id, val_loss, val_accuracy, extra, lr, train_loss in s.execute(
                    select(Metric.trial_id, Metric.val_loss, Metric.val_accuracy, Metric.extra, Metric.lr,
                           Metric.train_loss)
                    .where(Metric.trial_id.in_(finished_ids))
                    .order_by(Metric.trial_id, Metric.epoch)
                ):
                    if trial_id in points:
                        if train_loss is not None:
                            points[trial_id].append((lr, train_loss))
                    else:
                        curves[trial_id].append(self._score(val_loss, val_accuracy, extra))
            for t in trials:
                if t.status in FINISHED_TRIAL_STATUSES:
                    if is_range_test(t.config):
                        self.strategy.observe(self._range_test_outcome(t.number, t.config, t.status,
                                                                       points[t.id]))
                        continue
                    curve = curves[t.id]
                    if self.stopper is not None:
                        for epoch, v in enumerate(curve):
                            if v is not None:
                                self.stopper.report(t.number, epoch, v)
                        self.stopper.trial_finished(t.number, t.status)
                    self.strategy.observe(self._outcome(t.number, t.config, t.status, curve))
                else:
                    # Running when the last owner stopped: same number and config, resumed from its
                    # checkpoint where there is one (see _restore_point).
                    t.status = "queued"
                    self._pending.append(TrialItem(t.id, t.number, dict(t.config), resume=True))
            self._next_number = len(trials)

    def _score(self, val_loss: float | None, val_accuracy: float | None, extra: dict | None) -> float | None:
        """A stored metric row's objective as a score (lower is better), None when it has none."""
        return self.objective.score(stored_value(self.objective.metric, val_loss, val_accuracy, extra))

    @staticmethod
    def _outcome(number: int, config: dict, status: str, curve: list[float | None]) -> TrialOutcome:
        finite = [v for v in curve if v is not None and math.isfinite(v)]
        return TrialOutcome(number=number, config=config, status=status,
                            val_loss=min(finite) if finite else None, epochs=len(curve),
                            val_losses=tuple(finite))

    @staticmethod
    def _range_test_outcome(number: int, config: dict, status: str,
                            points: list[tuple[float, float]]) -> TrialOutcome:
        return TrialOutcome(number=number, config=config, status=status, val_loss=None, epochs=len(points),
                            points=tuple(points))

    # -- scheduling ------------------------------------------------------------------------
    def _next(self) -> TrialItem | None:
        with self._lock:
            while True:
                if self.cancelled or self.shutting_down:
                    return None
                if self._pending:
                    self._in_flight += 1
                    return self._pending.popleft()
                if self._exhausted:
                    return None
                config = self.strategy.suggest()
                if config is not WAIT:
                    break
                if self._in_flight == 0:
                    raise RuntimeError(f"strategy {self.spec.strategy} waits for a trial but none is running")
                self._trial_ended.wait(timeout=1.0)
            if config is None:
                self._exhausted = True
                return None
            assert isinstance(config, dict)
            self._in_flight += 1
            number = self._next_number
            self._next_number += 1
            # The trial row and the strategy's state are written together: a crash never
            # leaves a suggestion the store does not know about.
            state = self.strategy.state_dict()

            def insert(s: Session) -> int:
                # Safe to repeat: a retry after a commit whose answer was lost finds the row.
                existing = s.scalar(select(Trial.id).where(Trial.job_id == self.job_id, Trial.number == number))
                if existing is not None:
                    return existing
                trial = Trial(job_id=self.job_id, number=number, status="queued", config=config)
                s.add(trial)
                s.execute(update(Job).where(Job.id == self.job_id).values(strategy_state=state))
                s.flush()
                return trial.id

            return TrialItem(run_tx(self.sessions, insert), number, config)

    def _slot(self) -> None:
        try:
            while (item := self._next()) is not None:
                try:
                    if is_range_test(item.config):
                        self._run_range_test(item)
                    else:
                        self._run_trial(item)
                finally:
                    with self._lock:
                        self._in_flight -= 1
                        self._trial_ended.notify_all()
        except Exception as exc:  # noqa: BLE001 - the store could not be written: stop the job's other slots
            self._slot_error = exc
            self.shutdown()

    # -- one trial ---------------------------------------------------------------------------
    def _run_trial(self, item: TrialItem) -> None:
        spec = self.spec
        resources = trial_resources(spec)
        checkpoint_every = self.runner.settings.checkpoint_every
        checkpoint_seconds = self.runner.settings.checkpoint_seconds
        started = time.monotonic()
        # A fresh trial has nothing stored; one that ran before continues from its checkpoint.
        checkpoint, curve = self._restore_point(item) if item.resume else (None, [])
        last_write: Future[bool] | None = None
        # Where the early-stopping rule may stop this trial: the worker waits there for the verdict.
        pause_after: list[int] = []
        if self.stopper is not None:
            epochs_at = self.stopper.decision_epochs(item.number)
            pause_after = sorted(epochs_at) if epochs_at is not None else list(range(spec.rounds))
        length = spec.length()

        def attempt(key: str) -> tuple[str | None, str | None]:
            nonlocal last_write
            for result in self.executor.run_trial(key, spec.workload, item.config, length.get("epochs"),
                                                  spec.trial_seed, resources, checkpoint, checkpoint_every,
                                                  checkpoint_seconds, spec.divergence_factor,
                                                  pause_after, stop_without_progress=self.stopper is not None,
                                                  steps=length.get("steps"), eval_every=length.get("eval_every"),
                                                  batch_size=spec.batch_size, workers=spec.resources.workers):
                epoch = int(result["epoch"])
                row = epoch_row(item.id, result, self.objective)
                last_write = self._record_epoch(row)
                if result.get("checkpoint") is not None:
                    self.runner.checkpoints.save(self.job_id, item.number, epoch + 1, result["checkpoint"])
                score = self.objective.score(row.value)
                curve.append(score)
                if result.get("diverged"):
                    where = f"epoch {epoch}" if spec.steps is None else f"step {result.get('step')}"
                    return "diverged", f"diverged at {where}: {result.get('reason') or 'loss not finite'}"
                if self.shutting_down:
                    return None, None
                if self.cancelled:
                    return "cancelled", None
                if (self.stopper is not None and score is not None and epoch < spec.rounds - 1
                        and self._report(item.number, epoch, score) == "stop"):
                    return "pruned", None
                if result.get("stalled"):  # reported to the rule first, as a replay would
                    return "pruned", None
                if epoch in pause_after:
                    self.executor.resume(key)
            return "completed", None

        def from_last_checkpoint() -> None:
            nonlocal checkpoint, curve
            if last_write is not None:
                last_write.result()  # what was received is in the store before we look at it
            checkpoint, curve = self._restore_point(item)

        status, error = self._until_ended(item, attempt, "retrying from its last checkpoint", from_last_checkpoint)
        if status == "completed" and len(curve) < spec.rounds:
            # The worker stopped early without saying why: we asked it to.
            status = None if self.shutting_down else "cancelled"
        if last_write is not None:
            last_write.result()  # every epoch is stored before the trial's end is
        if status is None:
            return  # the service is stopping: the trial stays running and resumes on restart
        self.runner.checkpoints.delete(self.job_id, item.number)
        self._mark_finished(item, status, error, started)
        with self._lock:
            if self.stopper is not None:
                self.stopper.trial_finished(item.number, status)
            self.strategy.observe(self._outcome(item.number, item.config, status, curve))

    def _until_ended(self, item: TrialItem, attempt: Callable[[str], tuple[str | None, str | None]],
                     again: str, before_again: Callable[[], None] | None = None) -> tuple[str | None, str | None]:
        """Attempts at a trial until one ends it: ``attempt(key)`` answers (status, error). A lost
        worker means another attempt (``before_again`` first) while retries are left; any other
        error fails the trial."""
        retries = 0
        while True:
            try:
                with self._attempt(item) as key:
                    return attempt(key)
            except WorkerLost as exc:
                retries += 1
                end = self._after_worker_lost(item, retries, exc, again)
                if end is not None:
                    return end
                if before_again is not None:
                    before_again()
            except Exception as exc:  # noqa: BLE001 - an error in the workload or the worker
                log.info("job %s trial %s failed", self.job_id, item.number, exc_info=exc)
                return "failed", readable_error(exc)[:2000]

    @contextmanager
    def _attempt(self, item: TrialItem) -> Iterator[str]:
        """One attempt at a trial: the trial marked running, and a fresh key to stop it by."""
        key = f"{self.job_id}:{item.number}:{uuid.uuid4().hex[:8]}"
        with self._lock:
            self._running_keys.add(key)
        try:
            self._mark_running(item)
            yield key
        finally:
            with self._lock:
                self._running_keys.discard(key)

    def _after_worker_lost(self, item: TrialItem, retries: int, exc: WorkerLost,
                           again: str) -> tuple[str | None, str | None] | None:
        """A trial's worker died: None to run it again, else its end, (status, error); status None
        when the service is stopping (the trial stays running and resumes on restart)."""
        if self.shutting_down:
            return None, None
        if retries > self.spec.max_retries or self.cancelled:
            return "failed", f"worker lost after {retries} attempt(s): {exc}"
        log.warning("job %s trial %s: worker lost (%s); %s", self.job_id, item.number, exc, again)
        return None

    def _mark_running(self, item: TrialItem) -> None:
        now = utcnow()
        run_tx(self.sessions, lambda s: s.execute(update(Trial).where(Trial.id == item.id).values(
            status="running", started_at=func.coalesce(Trial.started_at, now), finished_at=None, error=None,
            attempts=Trial.attempts + 1)))

    def _mark_finished(self, item: TrialItem, status: str, error: str | None, started: float) -> None:
        finished = utcnow()
        run_tx(self.sessions, lambda s: s.execute(update(Trial).where(Trial.id == item.id).values(
            status=status, error=error, finished_at=finished)))
        self.runner.metrics.trials_finished.labels(status).inc()
        self.runner.metrics.trial_duration.observe(time.monotonic() - started)

    # -- one range test ------------------------------------------------------------------------
    def _run_range_test(self, item: TrialItem) -> None:
        """A range-test trial: one call to a worker, then its curve stored as metric rows, one per
        step (``epoch`` = the step, ``lr`` its rate, ``train_loss`` the batch loss; no validation
        loss, so it never ranks). It is short: a restart or a lost worker runs it again whole."""
        spec = self.spec
        resources = trial_resources(spec)
        started = time.monotonic()
        result: dict | None = None
        if item.resume:
            self._clear_metrics(item)

        def attempt(key: str) -> tuple[str | None, str | None]:
            nonlocal result
            result = self.executor.run_range_test(key, spec.workload, item.config, spec.trial_seed, resources,
                                                  batch_size=spec.batch_size)
            if result is None:  # stopped before it started
                return (None if self.shutting_down else "cancelled"), None
            return "completed", None

        status, error = self._until_ended(item, attempt, "running it again")
        points: list[tuple[float, float]] = []
        if result is not None:
            node = result.get("node")
            writes = [self.runner.writer.submit(epoch_row(item.id, {
                "epoch": step, "step": step, "train_loss": loss, "lr": lr, "node": node}))
                for step, (lr, loss) in enumerate(zip(result["lrs"], result["raw_losses"]))]
            for done in writes:
                done.result()
            points = list(zip(result["lrs"], result["raw_losses"]))
            if result.get("reason"):
                log.info("job %s range test %s stopped: %s", self.job_id, item.number, result["reason"])
        if status is None:
            return
        self._mark_finished(item, status, error, started)
        with self._lock:
            self.strategy.observe(self._range_test_outcome(item.number, item.config, status, points))

    def _clear_metrics(self, item: TrialItem, from_epoch: int = 0) -> list[float | None]:
        """Drop the trial's metrics from ``from_epoch`` on; return the objective's curve kept (scores)."""
        def clear(s: Session) -> list[float | None]:
            s.execute(delete(Metric).where(Metric.trial_id == item.id, Metric.epoch >= from_epoch))
            kept = list(s.execute(select(Metric.epoch, Metric.val_loss, Metric.val_accuracy, Metric.extra)
                                  .where(Metric.trial_id == item.id).order_by(Metric.epoch)))
            curve = [self._score(v, a, x) for _, v, a, x in kept]
            losses = [v for _, v, _, _ in kept if v is not None]
            scored = [(c, e) for c, (e, *_) in zip(curve, kept) if c is not None]
            best_score, best_epoch = min(scored) if scored else (None, None)
            s.execute(update(Trial).where(Trial.id == item.id).values(
                epochs=len(kept), val_loss=min(losses) if losses else None,
                objective=self.objective.value(best_score), best_epoch=best_epoch))
            return curve

        return run_tx(self.sessions, clear)

    def _restore_point(self, item: TrialItem) -> tuple[bytes | None, list[float | None]]:
        """Where a trial that ran before continues: after its last checkpoint (the metrics up to
        it are kept, later ones dropped, so no epoch is stored twice), or from the start."""
        saved = self.runner.checkpoints.load(self.job_id, item.number)
        if saved is None:
            return None, self._clear_metrics(item)
        epochs_done, data = saved
        stored = run_tx(self.sessions, lambda s: s.scalar(
            select(func.count()).select_from(Metric).where(Metric.trial_id == item.id))) or 0
        if stored < epochs_done:  # the checkpoint is ahead of the store: cannot trust it
            return None, self._clear_metrics(item)
        curve = self._clear_metrics(item, from_epoch=epochs_done)
        if self.stopper is not None:
            with self._lock:  # the stopper saw these epochs before; replay gives the same answers
                for epoch, v in enumerate(curve):
                    if v is not None:
                        self.stopper.report(item.number, epoch, v)
        return data, curve

    def _report(self, number: int, epoch: int, val_loss: float) -> str:
        with self._lock:
            return str(self.stopper.report(number, epoch, val_loss))

    def _record_epoch(self, row: EpochRow) -> Future[bool]:
        """Queue the metric row and the trial's running best for the next group commit; the future
        is done once it is committed. Idempotent: an epoch already stored is not stored again."""
        done = self.runner.writer.submit(row)
        counter = self.runner.metrics.epochs_trained
        done.add_done_callback(lambda f: counter.inc() if not f.exception() and f.result() else None)
        return done

    # -- the end -----------------------------------------------------------------------------
    def _finish(self) -> None:
        def finish(s: Session) -> None:
            job = s.get(Job, self.job_id)
            assert job is not None
            if self.cancelled or job.cancel_requested:
                s.execute(update(Trial).where(Trial.job_id == self.job_id, Trial.status.in_(("queued", "running")))
                          .values(status="cancelled", finished_at=utcnow()))
                job.status = "cancelled"
            else:
                statuses = list(s.scalars(select(Trial.status).where(Trial.job_id == self.job_id)))
                if statuses and all(st == "failed" for st in statuses):
                    first = s.execute(select(Trial.number, Trial.error).where(Trial.job_id == self.job_id)
                                      .order_by(Trial.number).limit(1)).one()
                    job.status = "failed"
                    job.error = (f"every trial failed ({len(statuses)}); trial {first.number}: {first.error} "
                                 "(lrsearch trials JOB --status failed lists them)")
                else:
                    job.status = "completed"
            job.finished_at = utcnow()
            job.heartbeat_at = None

        run_tx(self.sessions, finish)
        self.runner.checkpoints.delete_job(self.job_id)


class JobRunner:
    """Claims jobs from the store and runs them; one per service process."""

    def __init__(self, sessions: sessionmaker[Session], executor: RayExecutor, settings: Settings,
                 metrics: ServiceMetrics | None = None) -> None:
        self.sessions = sessions
        self.metrics = metrics or ServiceMetrics()
        self.checkpoints = CheckpointStore(Path(settings.data_dir) / "checkpoints")
        self.writer = MetricWriter(sessions)
        self.executor = executor
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._executions: dict[int, JobExecution] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)

    def workload_names(self) -> list[str]:
        from lrsearch.workers.registry import workload_names

        return workload_names()

    def start(self) -> None:
        self._thread.start()

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
            # without finishing lets its lease lapse, so it is resumed), and see which were cancelled.
            s.execute(update(Job).where(Job.claimed_by == self.owner, Job.status == "running",
                                        Job.id.in_(list(self._executions)))
                      .values(heartbeat_at=now))
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
                claimed = s.execute(
                    update(Job).where(Job.id == job_id, claimable)
                    .values(status="running", claimed_by=self.owner, heartbeat_at=now)
                ).rowcount == 1
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
