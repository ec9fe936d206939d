"""Derived answers of service/crud.py: the range tests' suggestions are computed once per change."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from lrsearch.search.range_test import summarize
from lrsearch.service.crud import range_tests, suggestion_best
from lrsearch.service.db import make_engine, make_session_factory, upgrade
from lrsearch.service.models import Job, RangeTestPoint, Trial

STEPS = 40


def finder_curve(shift: float) -> tuple[list[float], list[float]]:
    """A range test's (lrs, losses): flat, a dip near lr ~ 1e-2 * shift, then a blow-up."""
    lrs = [1e-7 * (1e8 ** (i / (STEPS - 1))) for i in range(STEPS)]
    losses = [2.3 - 1.5 * math.exp(-((math.log10(lr / shift) + 2.0) ** 2)) + (lr / shift) ** 0.5 for lr in lrs]
    return lrs, losses


@pytest.fixture
def sessions(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    upgrade(engine)
    yield make_session_factory(engine)
    engine.dispose()


def add_test(s: Session, job_id: int, number: int, status: str, shift: float | None) -> int:
    config = {"optimizer": "sgd", "lr": 1e-7, "range_test": {"repeat": number, "num_steps": STEPS}}
    trial = Trial(job_id=job_id, number=number, status=status, config=config, kind="range_test",
                  finished_at=datetime.now(UTC) if status == "completed" else None)
    s.add(trial)
    s.flush()
    if shift is not None:
        write_curve(s, trial.id, shift)
    return trial.id


def write_curve(s: Session, trial_id: int, shift: float) -> None:
    for step, (lr, loss) in enumerate(zip(*finder_curve(shift))):
        s.add(RangeTestPoint(trial_id=trial_id, step=step, lr=lr, loss=loss))


def metric_reads(s: Session) -> list[str]:
    """Collects every SELECT that reads a range test's curve on this session's connection."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "range_test_points" in statement:
            seen.append(statement)

    event.listen(s.get_bind(), "before_cursor_execute", listen)
    return seen


def test_range_test_answers_are_reused_until_a_test_changes(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        job = Job(name="finder", status="running", spec={"strategy": "range_test"}, strategy_state={})
        s.add(job)
        s.flush()
        job_id = job.id
        add_test(s, job_id, 0, "completed", 1.0)
        running = add_test(s, job_id, 1, "running", None)

    with sessions() as s:
        reads = metric_reads(s)
        job = s.get(Job, job_id)
        assert job is not None
        first = range_tests(s, job)
        assert len(reads) == 1  # the curves of the finished test
        assert [len(f.curves) for f in first] == [1]
        assert first[0].suggestion is not None
        again = range_tests(s, job)
        assert len(reads) == 1  # nothing changed: the stored answer, no curve read again
        assert [f.model_dump() for f in again] == [f.model_dump() for f in first]

    # The second test finishes: the answer is computed again, from both curves.
    with sessions.begin() as s:
        write_curve(s, running, 3.0)
        trial = s.get(Trial, running)
        assert trial is not None
        trial.status, trial.finished_at = "completed", datetime.now(UTC)
    with sessions() as s:
        reads = metric_reads(s)
        job = s.get(Job, job_id)
        assert job is not None
        both = range_tests(s, job)
        assert len(reads) == 1
        assert [len(f.curves) for f in both] == [2]
        expected = summarize([(1e-7, *finder_curve(1.0)), (1e-7, *finder_curve(3.0))])
        assert expected is not None and both[0].suggestion is not None
        assert both[0].suggestion.lr == pytest.approx(expected["lr"])
        assert both[0].suggestion.lr != pytest.approx(first[0].suggestion.lr)


def test_a_stored_curve_no_reading_can_use_gives_no_suggestion(
        sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture) -> None:
    """New jobs cannot store such a curve (a range over one lr is refused), but older ones may
    have: every step at the same lr, which summarize() rejects. The answer is the curve without a
    suggestion and a logged reason, never an error for the whole request."""
    with sessions.begin() as s:
        job = Job(name="finder", status="completed", spec={"strategy": "range_test"}, strategy_state={})
        s.add(job)
        s.flush()
        job_id = job.id
        trial_id = add_test(s, job_id, 0, "completed", None)
        _, losses = finder_curve(1.0)
        for step, loss in enumerate(losses):
            s.add(RangeTestPoint(trial_id=trial_id, step=step, lr=1e-3, loss=loss))

    with sessions() as s, caplog.at_level("WARNING", logger="lrsearch.service.crud"):
        job = s.get(Job, job_id)
        assert job is not None
        finder = range_tests(s, job)
        assert [f.optimizer for f in finder] == ["sgd"]
        assert [len(f.curves) for f in finder] == [1] and finder[0].curves[0].lrs == [1e-3] * STEPS
        assert finder[0].suggestion is None
        assert suggestion_best(s, job, finder) is None
    assert "range tests of sgd cannot be summarised" in caplog.text
