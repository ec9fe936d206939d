"""Group commit of the runner's writes: many trials' rows and marks go into one transaction.

A job's slot hands its writes over and goes on: a new trial's row (with the strategy's state),
each evaluation's metric row, the mark of an attempt and of a trial's end. The writer applies them
in the order they came, a batch per transaction, so nothing the store says is finished lacks a row
and a trial's rows never come before the trial. A slot waits only where it reads what it wrote (a
resume from a checkpoint, the job's end). Work received but not yet committed when the process
dies is done again on resume: a trial not stored was never suggested (its strategy state went with
it), a finished trial not marked runs again, an epoch not stored is trained again.
Under load one commit carries many rows, far more rows per second than one commit per row allows.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from lrsearch.search.objective import Objective
from lrsearch.service.crud import finite_or_none
from lrsearch.service.db import run_tx
from lrsearch.service.models import Job, Metric, Trial

log = logging.getLogger(__name__)

MAX_BATCH = 1000
_TRIALS = cast(Table, Trial.__table__)
_METRICS = cast(Table, Metric.__table__)
_JOBS = cast(Table, Job.__table__)


class TrialRef:
    """A trial's row: its id once the insert is committed (known at once for a stored trial)."""

    def __init__(self, trial_id: int | None = None) -> None:
        self.id = trial_id  # the writer's; others call ``wait``
        self.stored: Future[int] = Future()
        if trial_id is not None:
            self.stored.set_result(trial_id)

    def wait(self) -> int:
        """The id, once the row is in the store (raises if storing it failed)."""
        return self.stored.result()


@dataclass
class TrialInsert:
    """A new trial, stored running, with its job's strategy state as of its suggestion."""

    ref: TrialRef
    job_id: int
    number: int
    config: dict[str, Any]
    kind: str
    strategy_state: dict[str, Any]
    started_at: datetime
    done: Future[Any] = field(default_factory=Future)


@dataclass
class TrialUpdate:
    """Columns of a stored trial; ``attempt`` also counts one more attempt (and keeps started_at)."""

    ref: TrialRef
    values: dict[str, Any]
    attempt: bool = False
    done: Future[Any] = field(default_factory=Future)


@dataclass
class EpochRow:
    trial: TrialRef
    epoch: int
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None
    lr: float
    node: str | None
    step: int | None = None
    extra: dict[str, float | None] | None = None  # the workload's other validation metrics
    value: float | None = None  # this evaluation's value of the job's objective
    objective: Objective = field(default_factory=Objective)  # which value is better
    workers: list[dict[str, Any]] | None = None  # a data-parallel trial's workers
    done: Future[Any] = field(default_factory=Future)  # True if stored now, False if already there


@dataclass
class Barrier:
    """Nothing to write: done once every write queued before it is committed."""

    done: Future[Any] = field(default_factory=Future)


Write = TrialInsert | TrialUpdate | EpochRow | Barrier


class StoreWriter:
    """One writer thread per service process, applying writes in the order they were submitted."""

    def __init__(self, sessions: sessionmaker[Session], max_pending: int = 20_000) -> None:
        self.sessions = sessions
        # Bounded: writers slow down rather than pile up rows in memory when the store lags.
        self._queue: queue.Queue[Write | None] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, write: Write) -> Future[Any]:
        """Queue a write; its future is done once it is committed (an EpochRow's says True, or False
        when the evaluation was stored before; a TrialInsert's is the trial's id)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
                self._thread.start()
        self._queue.put(write)
        return write.done

    def write(self, write: Write) -> Any:
        """Store and wait until it is committed."""
        return self.submit(write).result()

    def stop(self) -> None:
        """Commit what is queued, then end the thread."""
        with self._lock:
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(30)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:  # everything that queued up while the last commit ran
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                answers = run_tx(self.sessions, partial(self._store, batch=batch))
                for write, answer in zip(batch, answers):
                    if isinstance(write, TrialInsert):
                        write.ref.stored.set_result(answer)
                    write.done.set_result(answer)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                log.exception("storing %d writes failed", len(batch))
                for write in batch:
                    if isinstance(write, TrialInsert) and not write.ref.stored.done():
                        write.ref.stored.set_exception(exc)
                    if not write.done.done():
                        write.done.set_exception(exc)
            if stop:
                return

    @staticmethod
    def _store(s: Session, batch: list[Write]) -> list[Any]:
        """One transaction, safe to repeat: new trials first (their rows follow them), then the
        metric rows, then the trials' marks in the order they came (they touch other columns)."""
        answers: dict[int, Any] = {}
        states: dict[int, dict[str, Any]] = {}
        for i, w in enumerate(batch):
            if isinstance(w, TrialInsert):
                # A retried batch finds the row a lost answer committed.
                found = s.scalar(select(_TRIALS.c.id).where(_TRIALS.c.job_id == w.job_id,
                                                            _TRIALS.c.number == w.number))
                if found is None:
                    found = s.execute(_TRIALS.insert().values(
                        job_id=w.job_id, number=w.number, status="running", config=w.config, kind=w.kind,
                        attempts=1, started_at=w.started_at).returning(_TRIALS.c.id)).scalar_one()
                w.ref.id = answers[i] = int(found)
                states[w.job_id] = w.strategy_state
        for job_id, state in states.items():
            s.execute(_JOBS.update().where(_JOBS.c.id == job_id).values(strategy_state=state))
        rows = [(i, w) for i, w in enumerate(batch) if isinstance(w, EpochRow)]
        if rows:
            answers.update(zip((i for i, _ in rows), StoreWriter._store_rows(s, [w for _, w in rows])))
        for i, w in enumerate(batch):
            if isinstance(w, Barrier):
                answers[i] = True
            elif isinstance(w, TrialUpdate):
                values = dict(w.values)
                if w.attempt:
                    values["attempts"] = _TRIALS.c.attempts + 1
                    if "started_at" in values:  # the first attempt's start is the trial's
                        values["started_at"] = func.coalesce(_TRIALS.c.started_at, values["started_at"])
                s.execute(_TRIALS.update().where(_TRIALS.c.id == w.ref.id).values(**values))
                answers[i] = True
        return [answers[i] for i in range(len(batch))]

    @staticmethod
    def _store_rows(s: Session, batch: list[EpochRow]) -> list[bool]:
        """Insert the rows not stored yet and update each trial's running best."""
        pairs = {(r.trial.id, r.epoch) for r in batch}
        existing = set(s.execute(select(_METRICS.c.trial_id, _METRICS.c.epoch)
                                 .where(tuple_(_METRICS.c.trial_id, _METRICS.c.epoch).in_(list(pairs)))).all())
        fresh: dict[tuple[int | None, int], EpochRow] = {}
        for r in batch:
            if (r.trial.id, r.epoch) not in existing and (r.trial.id, r.epoch) not in fresh:
                fresh[(r.trial.id, r.epoch)] = r
        if fresh:
            s.execute(_METRICS.insert(), [
                {"trial_id": r.trial.id, "epoch": r.epoch, "step": r.step, "train_loss": r.train_loss,
                 "val_loss": r.val_loss, "val_accuracy": r.val_accuracy, "lr": r.lr, "extra": r.extra or None}
                for r in fresh.values()])
            trial_ids = {r.trial.id for r in fresh.values()}
            current = {tid: [vl, ob, be, ep, node, wk] for tid, vl, ob, be, ep, node, wk in s.execute(
                select(_TRIALS.c.id, _TRIALS.c.val_loss, _TRIALS.c.objective, _TRIALS.c.best_epoch,
                       _TRIALS.c.epochs, _TRIALS.c.node, _TRIALS.c.workers).where(_TRIALS.c.id.in_(trial_ids)))}
            for r in sorted(fresh.values(), key=lambda r: r.epoch):
                row = current[r.trial.id]
                if r.val_loss is not None and (row[0] is None or r.val_loss < row[0]):
                    row[0] = r.val_loss
                if r.value is not None and (row[1] is None or r.objective.better(r.value, row[1])):
                    row[1], row[2] = r.value, r.epoch
                row[3], row[4], row[5] = max(row[3], r.epoch + 1), r.node or row[4], r.workers or row[5]
            s.execute(_TRIALS.update().where(_TRIALS.c.id == bindparam("_id")), [
                {"_id": tid, "val_loss": vl, "objective": ob, "best_epoch": be, "epochs": ep, "node": node,
                 "workers": wk} for tid, (vl, ob, be, ep, node, wk) in current.items()])
        return [(r.trial.id, r.epoch) in fresh and fresh[(r.trial.id, r.epoch)] is r for r in batch]


# Metrics with a column of their own; a workload's others go to Metric.extra.
COLUMN_METRICS = ("val_loss", "val_accuracy")


def stored_value(metric: str, val_loss: float | None, val_accuracy: float | None,
                 extra: dict[str, Any] | None) -> float | None:
    """A validation metric's value in a stored metric row (its column, or ``extra``)."""
    if metric == "val_loss":
        return val_loss
    if metric == "val_accuracy":
        return val_accuracy
    return finite_or_none((extra or {}).get(metric))


def epoch_row(trial: TrialRef | int, result: dict[str, Any], objective: Objective | None = None) -> EpochRow:
    """The metric row of one evaluation the worker reported, with its value of ``objective``
    (``trial``: the trial's row, or the id of a stored one)."""
    metrics = {**(result.get("metrics") or {}),
               **{k: result[k] for k in COLUMN_METRICS if result.get(k) is not None}}
    value = finite_or_none(metrics.get(objective.metric)) if objective is not None else None
    step = result.get("step")
    return EpochRow(trial=trial if isinstance(trial, TrialRef) else TrialRef(trial), epoch=int(result["epoch"]),
                    train_loss=finite_or_none(result.get("train_loss")),
                    val_loss=finite_or_none(result.get("val_loss")),
                    val_accuracy=finite_or_none(result.get("val_accuracy")), lr=float(result["lr"]),
                    node=str(result["node"]) if result.get("node") else None,
                    step=int(step) if step is not None else None,
                    extra={k: finite_or_none(v) for k, v in metrics.items() if k not in COLUMN_METRICS} or None,
                    value=value, objective=objective or Objective(),
                    workers=result.get("workers"))
