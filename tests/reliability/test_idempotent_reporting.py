"""A result reported twice (a retry after a timeout) is stored once; (trial, epoch) is unique."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from lrsearch.search.objective import Objective
from lrsearch.service.config import Settings
from lrsearch.service.db import make_engine, make_session_factory, upgrade
from lrsearch.service.ingest import epoch_row
from lrsearch.service.models import Job, Metric, Trial
from lrsearch.service.runner import JobRunner
from lrsearch.workers.in_process_executor import InProcessExecutor


def test_a_repeated_epoch_is_stored_once(db_url: str, tmp_path) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as s:
        job = Job(name="j", status="running", spec={}, strategy_state={})
        s.add(job)
        s.flush()
        trial = Trial(job_id=job.id, number=0, status="running", config={"lr": 0.1})
        s.add(trial)
        s.flush()
        trial_id = trial.id
    runner = JobRunner(sessions, InProcessExecutor(), Settings(database_url=db_url, data_dir=str(tmp_path)))
    result = {"epoch": 0, "train_loss": 1.0, "val_loss": 0.9, "val_accuracy": 0.5, "lr": 0.1}
    objective = Objective()
    assert runner.record(epoch_row(trial_id, result, objective)).result() is True
    # The same epoch again (a retried report): not stored again.
    assert runner.record(epoch_row(trial_id, {**result, "val_loss": 0.1}, objective)).result() is False
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Metric)) == 1
        assert s.scalar(select(Metric.val_loss)) == 0.9
        assert s.get(Trial, trial_id).val_loss == 0.9  # type: ignore[union-attr]  # the trial exists
        assert s.get(Trial, trial_id).objective == 0.9  # type: ignore[union-attr]  # the trial exists
    with pytest.raises(IntegrityError), sessions.begin() as s:  # the store itself refuses a duplicate
        s.add(Metric(trial_id=trial_id, epoch=0, train_loss=1.0, val_loss=0.5, val_accuracy=0.5, lr=0.1))
    engine.dispose()
