"""One trial's lifecycle: its attempts on the executor, retries when a worker is lost, restoring
from its checkpoint, the decision after each result, and its end in the store.

``TrainingTrial`` trains a candidate and stores a metric row per evaluation; ``RangeTestTrial``
runs one LR range test and stores its curve. Both live inside a JobExecution (the job's
lifecycle: service/job_execution.py), which owns the strategy, the early-stopping rule and the
flags that stop trials.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from lrsearch.search import TrialKind
from lrsearch.search.decisions import Evaluation, decide, range_test_outcome, replay_curve, trial_outcome
from lrsearch.service.db import run_tx
from lrsearch.service.ingest import TrialRef, TrialUpdate, epoch_row
from lrsearch.service.models import Metric, RangeTestPoint, Trial, utcnow
from lrsearch.workers.errors import readable_error
from lrsearch.workers.executor import RangeTestRun, TrialResources, TrialRun, WorkerLost

if TYPE_CHECKING:
    from lrsearch.service.job_execution import JobExecution

log = logging.getLogger(__name__)

# An attempt's end: (status, error); status None when the service is stopping (the trial stays
# running in the store and resumes on restart).
End = tuple[str | None, str | None]


@dataclass
class TrialItem:
    ref: TrialRef  # its row: a new trial's is being stored while it starts
    number: int
    config: dict[str, Any]
    kind: TrialKind
    resume: bool = False  # it ran before (service restart): continue from its checkpoint
    fresh: bool = False  # stored as running: its first attempt is already marked

    @property
    def id(self) -> int:
        """The trial's id, once its row is in the store (for what reads the store back)."""
        return self.ref.wait()


class TrialLifecycle:
    """What every kind of trial shares: attempts until one ends it, and its marks in the store."""

    again = "running it again"  # what a lost worker leads to, for the log

    def __init__(self, job: JobExecution, item: TrialItem) -> None:
        self.job = job
        self.item = item
        self.spec = job.spec
        self.resources = TrialResources(cpu=job.spec.resources.cpu, gpu=job.spec.resources.gpu)
        self.started = time.monotonic()

    def run(self) -> None:
        raise NotImplementedError

    def until_ended(self, attempt: Callable[[str], End], before_again: Callable[[], None] | None = None) -> End:
        """Attempts until one ends the trial: ``attempt(key)`` answers its end. A lost worker means
        another attempt (``before_again`` first) while retries are left; any other error fails it."""
        retries = 0
        while True:
            try:
                with self._attempt() as key:
                    return attempt(key)
            except WorkerLost as exc:
                retries += 1
                if self.job.shutting_down:
                    return None, None
                if retries > self.spec.max_retries or self.job.cancelled:
                    return "failed", f"worker lost after {retries} attempt(s): {exc}"
                log.warning("job %s trial %s: worker lost (%s); %s", self.job.job_id, self.item.number, exc,
                            self.again)
                if before_again is not None:
                    before_again()
            except Exception as exc:  # noqa: BLE001 - an error in the workload or the worker
                log.info("job %s trial %s failed", self.job.job_id, self.item.number, exc_info=exc)
                return "failed", readable_error(exc)[:2000]

    @contextmanager
    def _attempt(self) -> Iterator[str]:
        """One attempt: the trial marked running, and a fresh key to stop it by."""
        key = f"{self.job.job_id}:{self.item.number}:{uuid.uuid4().hex[:8]}"
        self.job.attempt_started(key)
        try:
            if self.item.fresh:  # its row was stored running, as its first attempt
                self.item.fresh = False
            else:
                self.job.write(TrialUpdate(self.item.ref, {"status": "running", "started_at": utcnow(),
                                                           "finished_at": None, "error": None}, attempt=True))
            yield key
        finally:
            self.job.attempt_ended(key)

    def mark_finished(self, status: str, error: str | None) -> None:
        # Queued after the trial's rows: the store never says finished before they are in.
        self.job.write(TrialUpdate(self.item.ref, {"status": status, "error": error, "finished_at": utcnow()}))
        metrics = self.job.runner.metrics
        metrics.trials_finished.labels(status).inc()
        metrics.trial_duration.observe(time.monotonic() - self.started)

    def clear_metrics(self, from_epoch: int = 0) -> list[float | None]:
        """Drop the trial's metric rows from ``from_epoch`` on; the objective's curve kept (scores)."""
        objective, trial_id = self.job.objective, self.item.id

        def clear(s: Session) -> list[float | None]:
            s.execute(delete(Metric).where(Metric.trial_id == trial_id, Metric.epoch >= from_epoch))
            kept = list(s.execute(select(Metric.epoch, Metric.val_loss, Metric.val_accuracy, Metric.extra)
                                  .where(Metric.trial_id == trial_id).order_by(Metric.epoch)))
            curve = [self.job.score(v, a, x) for _, v, a, x in kept]
            losses = [v for _, v, _, _ in kept if v is not None]
            scored = [(c, e) for c, (e, *_) in zip(curve, kept) if c is not None]
            best_score, best_epoch = min(scored) if scored else (None, None)
            s.execute(update(Trial).where(Trial.id == trial_id).values(
                epochs=len(kept), val_loss=min(losses) if losses else None,
                objective=objective.value(best_score), best_epoch=best_epoch))
            return curve

        return run_tx(self.job.sessions, clear)


class TrainingTrial(TrialLifecycle):
    """A candidate trained round by round; every evaluation stored and decided on as it arrives."""

    again = "retrying from its last checkpoint"
    heard_by_rule = True  # the job's early-stopping rule judges it

    def __init__(self, job: JobExecution, item: TrialItem) -> None:
        super().__init__(job, item)
        self.checkpoint: bytes | None = None
        self.curve: list[float | None] = []  # the objective's score per evaluation so far
        self.last_write: Future[bool] | None = None
        self.stopper = job.stopper if self.heard_by_rule else None
        self.first, self.stop = self.span()
        # Where the early-stopping rule may stop this trial: the worker waits there for the verdict.
        epochs_at = self.stopper.decision_epochs(item.number) if self.stopper is not None else frozenset()
        self.pause_after = tuple(sorted(epochs_at)) if epochs_at is not None else tuple(range(self.spec.rounds))

    def span(self) -> tuple[int, int]:
        """The evaluations this trial trains: from its first to before its stop (the whole run)."""
        return 0, self.spec.rounds

    def run(self) -> None:
        if self.item.resume:  # it ran before: continue from its checkpoint
            self.checkpoint, self.curve = self.restore_point()
        status, error = self.until_ended(self.attempt, self.from_last_checkpoint)
        if status == "completed" and len(self.curve) < self.stop - self.first:
            # The worker stopped early without saying why: we asked it to.
            status = None if self.job.shutting_down else "cancelled"
        if status is None:
            return  # the service is stopping: the trial stays running and resumes on restart
        self.forget_checkpoint()
        self.mark_finished(status, error)
        self.job.trial_ended(trial_outcome(self.item.number, self.item.config, status, self.curve),
                             ranked=self.heard_by_rule)

    def forget_checkpoint(self) -> None:
        """An ended trial's checkpoint is of no more use."""
        self.job.runner.checkpoints.delete(self.job.job_id, self.item.number)

    def trial_run(self) -> TrialRun:
        settings, spec = self.job.runner.settings, self.spec
        length = spec.length()
        return TrialRun(workload=spec.workload, config=self.item.config, seed=spec.trial_seed,
                        epochs=length.get("epochs"), steps=length.get("steps"), eval_every=length.get("eval_every"),
                        batch_size=spec.batch_size, resources=self.resources, workers=spec.resources.workers,
                        checkpoint=self.checkpoint, checkpoint_every=settings.checkpoint_every,
                        checkpoint_seconds=settings.checkpoint_seconds, divergence_factor=spec.divergence_factor,
                        pause_after=self.pause_after, stop_without_progress=self.stopper is not None)

    def attempt(self, key: str) -> End:
        job, item = self.job, self.item
        for result in job.executor.run_trial(key, self.trial_run()):
            epoch = int(result["epoch"])
            row = epoch_row(item.ref, result, job.objective)
            job.write(row)
            self.last_write = row.done
            if result.get("checkpoint") is not None:
                job.runner.checkpoints.save(job.job_id, item.number, epoch + 1, result["checkpoint"])
            score = job.objective.score(row.value)
            self.curve.append(score)
            diverged = bool(result.get("diverged"))
            if not diverged and job.shutting_down:
                return None, None
            if not diverged and job.cancelled:
                return "cancelled", None
            evaluation = Evaluation(number=item.number, index=epoch, score=score, last=epoch >= self.stop - 1,
                                    diverged=diverged, stalled=bool(result.get("stalled")),
                                    paused=epoch in self.pause_after)
            with job.lock:
                verdict = decide(evaluation, self.stopper)
            if verdict == "diverged":
                where = f"epoch {epoch}" if self.spec.steps is None else f"step {result.get('step')}"
                return "diverged", f"diverged at {where}: {result.get('reason') or 'loss not finite'}"
            if verdict == "pruned":
                return "pruned", None
            if verdict == "resume":
                job.executor.resume(key)
        return "completed", None

    def from_last_checkpoint(self) -> None:
        if self.last_write is not None:
            self.last_write.result()  # what was received is in the store before we look at it
        self.checkpoint, self.curve = self.restore_point()

    def restore_point(self) -> tuple[bytes | None, list[float | None]]:
        """Where a trial that ran before continues: after its last checkpoint (the rows up to it
        kept, later ones dropped, so no evaluation is stored twice), or from the start."""
        job, item = self.job, self.item
        saved = job.runner.checkpoints.load(job.job_id, item.number)
        if saved is None:
            return None, self.clear_metrics()
        epochs_done, data = saved
        stored = run_tx(job.sessions, lambda s: s.scalar(
            select(func.count()).select_from(Metric).where(Metric.trial_id == item.id))) or 0
        if stored < epochs_done:  # the checkpoint is ahead of the store: cannot trust it
            return None, self.clear_metrics()
        curve = self.clear_metrics(from_epoch=epochs_done)
        with job.lock:  # the rule saw these evaluations before; it answers the same again
            replay_curve(self.stopper, item.number, curve)
        return data, curve


class RangeTestTrial(TrialLifecycle):
    """One LR range test: one call to a worker, then its curve stored as range_test_points, one per
    step (the rate and the batch loss there; no evaluation, so it never ranks). It is short: a
    restart or a lost worker runs it again whole."""

    def run(self) -> None:
        job, item = self.job, self.item
        result: dict[str, Any] | None = None

        def attempt(key: str) -> End:
            nonlocal result
            result = job.executor.run_range_test(key, RangeTestRun(
                workload=self.spec.workload, config=item.config, seed=self.spec.trial_seed,
                batch_size=self.spec.batch_size, resources=self.resources))
            if result is None:  # stopped before it started
                return (None if job.shutting_down else "cancelled"), None
            return "completed", None

        status, error = self.until_ended(attempt)
        points: list[tuple[float, float]] = []
        if result is not None:
            points = list(zip(result["lrs"], result["raw_losses"]))
            self.store_curve(points, result.get("node"))
            if result.get("reason"):
                log.info("job %s range test %s stopped: %s", job.job_id, item.number, result["reason"])
        if status is None:
            return
        self.mark_finished(status, error)
        job.trial_ended(range_test_outcome(item.number, item.config, status, points), ranked=False)

    def store_curve(self, points: list[tuple[float, float]], node: str | None) -> None:
        """The whole curve at once, in place of any an earlier attempt stored (steps whose loss was
        not finite are left out: the test ends at the first)."""
        trial_id = self.item.id
        kept = [{"trial_id": trial_id, "step": step, "lr": lr, "loss": loss}
                for step, (lr, loss) in enumerate(points) if loss is not None]

        def store(s: Session) -> None:
            s.execute(delete(RangeTestPoint).where(RangeTestPoint.trial_id == trial_id))
            if kept:
                s.execute(cast(Table, RangeTestPoint.__table__).insert(), kept)
            s.execute(update(Trial).where(Trial.id == trial_id).values(epochs=len(points), node=node))

        run_tx(self.job.sessions, store)
