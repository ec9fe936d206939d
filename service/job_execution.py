"""One job's lifecycle: replay what the store knows, schedule candidates on ``max_concurrent``
slots, and finish the job. Each trial's own lifecycle is service/trial_lifecycle.py's.

Every state change is committed as it happens, so a service that stops (or dies) and starts again
resumes the job: finished trials are replayed into the strategy and the early-stopping rule, and
trials that were running run again with the same number and config, from their checkpoints.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lrsearch.search import WAIT, SpecError, StrategySpec, TrialKind, TrialOutcome, make_strategy
from lrsearch.search.decisions import range_test_outcome, replay_curve, trial_outcome
from lrsearch.service.db import run_tx
from lrsearch.service.ingest import Barrier, EpochRow, TrialInsert, TrialRef, Write, stored_value
from lrsearch.service.models import FINISHED_TRIAL_STATUSES, Job, Metric, RangeTestPoint, Trial, utcnow
from lrsearch.service.schemas import JobSpec
from lrsearch.service.segment_trial import SegmentTrial
from lrsearch.service.trial_lifecycle import RangeTestTrial, TrainingTrial, TrialItem, TrialLifecycle
from lrsearch.service.validation import check_job_spec, make_stopper, objective_of

if TYPE_CHECKING:
    from lrsearch.service.runner import JobRunner

log = logging.getLogger(__name__)


# How each kind of trial runs (the strategy says the kind when it suggests the config).
LIFECYCLES: dict[TrialKind, type[TrialLifecycle]] = {
    TrialKind.TRAINING: TrainingTrial,
    TrialKind.RANGE_TEST: RangeTestTrial,
    TrialKind.SEGMENT: SegmentTrial,
}


class JobExecution:
    """Drives one job: ``max_concurrent`` slot threads, each taking the next candidate as it frees up."""

    def __init__(self, runner: JobRunner, job_id: int) -> None:
        self.runner = runner
        self.job_id = job_id
        self.sessions: sessionmaker[Session] = runner.sessions
        self.executor = runner.executor
        self.lock = threading.Lock()  # the strategy, the rule and the counters below
        # Signalled when a trial ends (or the job stops): a strategy that answered WAIT asks again.
        self._trial_ended = threading.Condition(self.lock)
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
        with self.lock:
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
            self.flush()
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

    # -- what trials call ---------------------------------------------------------------------
    def attempt_started(self, key: str) -> None:
        with self.lock:
            self._running_keys.add(key)

    def attempt_ended(self, key: str) -> None:
        with self.lock:
            self._running_keys.discard(key)

    def trial_ended(self, outcome: TrialOutcome, ranked: bool = True) -> None:
        """A trial's end, as the rule (only a ``ranked`` training's) and the strategy hear it."""
        with self.lock:
            if self.stopper is not None and ranked:
                self.stopper.trial_finished(outcome.number, outcome.status)
            self.strategy.observe(outcome)

    def score(self, val_loss: float | None, val_accuracy: float | None, extra: dict | None) -> float | None:
        """A stored metric row's objective as a score (lower is better), None when it has none."""
        return self.objective.score(stored_value(self.objective.metric, val_loss, val_accuracy, extra))

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
            for outcome in self._replayed(s, [t for t in trials if t.status in FINISHED_TRIAL_STATUSES]):
                self.strategy.observe(outcome)
            for t in trials:
                if t.status not in FINISHED_TRIAL_STATUSES:
                    # Running when the last owner stopped: same number and config, resumed from its
                    # checkpoint where there is one.
                    t.status = "queued"
                    self._pending.append(TrialItem(TrialRef(t.id), t.number, dict(t.config), TrialKind(t.kind),
                                                    resume=True))
            self._next_number = len(trials)

    def _replayed(self, s: Session, finished: list[Trial]) -> list[TrialOutcome]:
        """The finished trials as the strategy heard them, read back from the store, in number
        order; the early-stopping rule hears their trainings' curves again on the way."""
        tests = [t.id for t in finished if t.kind == TrialKind.RANGE_TEST]
        trained = [t.id for t in finished if TrialKind(t.kind).evaluates]
        points: dict[int, list[tuple[float, float]]] = {i: [] for i in tests}
        curves: dict[int, list[float | None]] = {i: [] for i in trained}
        if tests:
            for trial_id, lr, loss in s.execute(
                    select(RangeTestPoint.trial_id, RangeTestPoint.lr, RangeTestPoint.loss)
                    .where(RangeTestPoint.trial_id.in_(tests)).order_by(RangeTestPoint.trial_id, RangeTestPoint.step)):
                points[trial_id].append((lr, loss))
        if trained:
            for trial_id, val_loss, val_accuracy, extra in s.execute(
                    select(Metric.trial_id, Metric.val_loss, Metric.val_accuracy, Metric.extra)
                    .where(Metric.trial_id.in_(trained)).order_by(Metric.trial_id, Metric.epoch)):
                curves[trial_id].append(self.score(val_loss, val_accuracy, extra))
        outcomes = []
        for t in finished:
            if t.id in points:
                outcomes.append(range_test_outcome(t.number, t.config, t.status, points[t.id]))
                continue
            if self.stopper is not None and t.kind == TrialKind.TRAINING:  # the rule judges trainings alone
                replay_curve(self.stopper, t.number, curves[t.id])
                self.stopper.trial_finished(t.number, t.status)
            outcomes.append(trial_outcome(t.number, t.config, t.status, curves[t.id]))
        return outcomes

    # -- scheduling ------------------------------------------------------------------------
    def _next(self) -> TrialItem | None:
        with self.lock:
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
            kind = TrialKind.of(config)
            self._in_flight += 1
            number = self._next_number
            self._next_number += 1
            # The trial row and the strategy's state are written together (a crash never leaves a
            # suggestion the store does not know about), queued: the trial starts training at once.
            # Queued under the lock: the states reach the store in the order they were taken.
            ref = TrialRef()
            # The state as of this suggestion: the writer stores it later, from its own thread, while
            # the strategy's own objects move on (a state stored ahead of its trials resumes wrong).
            state = json.loads(json.dumps(self.strategy.state_dict()))
            self.write(TrialInsert(ref, self.job_id, number, config, kind.value, state, utcnow()))
            return TrialItem(ref, number, config, kind, fresh=True)

    def write(self, write: Write) -> None:
        """Queue a write of this job's (they commit in the order queued). A write that fails stops
        the job's slots: the job is handed back, as when a transaction of its own fails."""
        done = self.runner.record(write) if isinstance(write, EpochRow) else self.runner.writer.submit(write)
        done.add_done_callback(self._write_done)

    def _write_done(self, done: Future[Any]) -> None:
        exc = done.exception()
        if exc is not None and self._slot_error is None:
            self._slot_error = exc if isinstance(exc, Exception) else RuntimeError(str(exc))
            # Not in this thread: it may be a slot's that holds the lock.
            threading.Thread(target=self.shutdown, name=f"job-{self.job_id}-stop", daemon=True).start()

    def flush(self) -> None:
        """Wait until every write queued so far is committed; raise the first that failed."""
        self.runner.writer.write(Barrier())
        if self._slot_error is not None:
            raise self._slot_error

    def _slot(self) -> None:
        try:
            while (item := self._next()) is not None:
                try:
                    LIFECYCLES[item.kind](self, item).run()
                finally:
                    with self.lock:
                        self._in_flight -= 1
                        self._trial_ended.notify_all()
        except Exception as exc:  # noqa: BLE001 - the store could not be written: stop the job's other slots
            self._slot_error = exc
            self.shutdown()

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
