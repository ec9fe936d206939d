"""Group commit of per-epoch results: many trials' epochs go into one transaction.

A trial's slot hands each epoch over and goes on; it waits for its rows to be committed before
anything that depends on them (the trial's final status, a resume from a checkpoint), so nothing
the store says is finished lacks a row. An epoch received but not yet committed when the process
dies is trained again on resume (its checkpoint is then ahead of the store and is not used).
Under load one commit carries many rows, far more rows per second than one commit per row allows.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from typing import Any, cast

from sqlalchemy import Table, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from lrsearch.search.objective import Objective
from lrsearch.service.crud import finite_or_none
from lrsearch.service.db import run_tx
from lrsearch.service.models import Metric, Trial

log = logging.getLogger(__name__)

MAX_BATCH = 1000


@dataclass
class EpochRow:
    trial_id: int
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
    done: Future[bool] = field(default_factory=Future)  # True if stored now, False if already there


class MetricWriter:
    """One writer thread per service process; ``write`` blocks until the row is committed."""

    def __init__(self, sessions: sessionmaker[Session], max_pending: int = 20_000) -> None:
        self.sessions = sessions
        # Bounded: writers slow down rather than pile up rows in memory when the store lags.
        self._queue: queue.Queue[EpochRow | None] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, row: EpochRow) -> Future[bool]:
        """Queue a row; the future says True once it is committed (False: it was stored before)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="metric-writer", daemon=True)
                self._thread.start()
        self._queue.put(row)
        return row.done

    def write(self, row: EpochRow) -> bool:
        """Store a row and wait until it is committed."""
        return self.submit(row).result()

    def stop(self) -> None:
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
                stored = run_tx(self.sessions, partial(self._store, batch=batch))
                for row, ok in zip(batch, stored):
                    row.done.set_result(ok)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                log.exception("storing %d metric rows failed", len(batch))
                for row in batch:
                    if not row.done.done():
                        row.done.set_exception(exc)
            if stop:
                return

    @staticmethod
    def _store(s: Session, batch: list[EpochRow]) -> list[bool]:
        """Insert the rows not stored yet and update each trial's running best; safe to repeat."""
        pairs = {(r.trial_id, r.epoch) for r in batch}
        existing = set(s.execute(select(Metric.trial_id, Metric.epoch)
                                 .where(tuple_(Metric.trial_id, Metric.epoch).in_(list(pairs)))).all())
        fresh: dict[tuple[int, int], EpochRow] = {}
        for r in batch:
            if (r.trial_id, r.epoch) not in existing and (r.trial_id, r.epoch) not in fresh:
                fresh[(r.trial_id, r.epoch)] = r
        if fresh:
            s.execute(cast(Table, Metric.__table__).insert(), [
                {"trial_id": r.trial_id, "epoch": r.epoch, "step": r.step, "train_loss": r.train_loss,
                 "val_loss": r.val_loss, "val_accuracy": r.val_accuracy, "lr": r.lr, "extra": r.extra or None}
                for r in fresh.values()])
            trial_ids = {r.trial_id for r in fresh.values()}
            current = {tid: [vl, ob, be, ep, node, wk] for tid, vl, ob, be, ep, node, wk in s.execute(
                select(Trial.id, Trial.val_loss, Trial.objective, Trial.best_epoch, Trial.epochs, Trial.node,
                       Trial.workers).where(Trial.id.in_(trial_ids)))}
            for r in sorted(fresh.values(), key=lambda r: r.epoch):
                row = current[r.trial_id]
                if r.val_loss is not None and (row[0] is None or r.val_loss < row[0]):
                    row[0] = r.val_loss
                if r.value is not None and (row[1] is None or r.objective.better(r.value, row[1])):
                    row[1], row[2] = r.value, r.epoch
                row[3], row[4], row[5] = max(row[3], r.epoch + 1), r.node or row[4], r.workers or row[5]
            s.execute(update(Trial), [{"id": tid, "val_loss": vl, "objective": ob, "best_epoch": be, "epochs": ep,
                                       "node": node, "workers": wk}
                                      for tid, (vl, ob, be, ep, node, wk) in current.items()])
        return [(r.trial_id, r.epoch) in fresh and fresh[(r.trial_id, r.epoch)] is r for r in batch]


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


def epoch_row(trial_id: int, result: dict[str, Any], objective: Objective | None = None) -> EpochRow:
    """The metric row of one evaluation the worker reported, with its value of ``objective``."""
    metrics = {**(result.get("metrics") or {}),
               **{k: result[k] for k in COLUMN_METRICS if result.get(k) is not None}}
    value = finite_or_none(metrics.get(objective.metric)) if objective is not None else None
    step = result.get("step")
    return EpochRow(trial_id=trial_id, epoch=int(result["epoch"]),
                    train_loss=finite_or_none(result.get("train_loss")),
                    val_loss=finite_or_none(result.get("val_loss")),
                    val_accuracy=finite_or_none(result.get("val_accuracy")), lr=float(result["lr"]),
                    node=str(result["node"]) if result.get("node") else None,
                    step=int(step) if step is not None else None,
                    extra={k: finite_or_none(v) for k, v in metrics.items() if k not in COLUMN_METRICS} or None,
                    value=value, objective=objective or Objective(),
                    workers=result.get("workers"))
