"""SQLAlchemy 2.0 typed models: jobs, trials, metrics. Indexed for the queries the API makes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and read back timezone-aware, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


JOB_STATUSES = ("queued", "running", "completed", "cancelled", "failed")
TRIAL_STATUSES = ("queued", "running", "completed", "pruned", "diverged", "failed", "cancelled")
FINISHED_TRIAL_STATUSES = ("completed", "pruned", "diverged", "failed", "cancelled")


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    strategy_state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    total_trials: Mapped[int | None] = mapped_column(Integer)  # when the strategy knows it up front
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Which service process drives the job, and when it last said so (lease).
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)

    trials: Mapped[list[Trial]] = relationship(back_populates="job", cascade="all, delete-orphan",
                                               passive_deletes=True)

    __table_args__ = (
        Index("ix_jobs_status", "status"),
        Index("ix_jobs_created_at", "created_at"),
    )


class Trial(Base):
    __tablename__ = "trials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What the trial is (search.trial_kind): "training" (metric rows) or "range_test" (a curve of
    # range_test_points). The strategy says which when it suggests the config.
    kind: Mapped[str] = mapped_column(String(16), default="training", server_default="training")
    val_loss: Mapped[float | None] = mapped_column(Float)  # lowest val_loss reached
    # The best value of the job's objective metric (the lowest or the highest, by its mode): the ranking value.
    objective: Mapped[float | None] = mapped_column(Float)
    best_epoch: Mapped[int | None] = mapped_column(Integer)  # the evaluation of that best objective
    epochs: Mapped[int] = mapped_column(Integer, default=0)  # finished epochs
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    node: Mapped[str | None] = mapped_column(String(128))
    # A data-parallel trial's workers: [{"rank", "node", "pid"}, ...]; null for one worker.
    workers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    job: Mapped[Job] = relationship(back_populates="trials")

    __table_args__ = (
        UniqueConstraint("job_id", "number", name="uq_trials_job_number"),
        Index("ix_trials_job_status", "job_id", "status"),
        Index("ix_trials_job_val_loss", "job_id", "val_loss"),
        Index("ix_trials_job_objective", "job_id", "objective"),
    )


class Metric(Base):
    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    epoch: Mapped[int] = mapped_column(Integer)  # the evaluation: an epoch, or a step job's n-th evaluation
    step: Mapped[int | None] = mapped_column(Integer)  # optimizer steps taken (null in rows of older versions)
    train_loss: Mapped[float | None] = mapped_column(Float)  # None where the loss was not finite
    val_loss: Mapped[float | None] = mapped_column(Float)
    val_accuracy: Mapped[float | None] = mapped_column(Float)
    lr: Mapped[float] = mapped_column(Float)
    # The workload's other validation metrics by name (val_bpb, val_f1, ...); null when it has none.
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (UniqueConstraint("trial_id", "epoch", name="uq_metrics_trial_epoch"),)


class RangeTestPoint(Base):
    """One step of an LR range test: the rate and the training batch's loss there. A range test's
    curve is a sweep, not a training: it has no evaluations and never ranks."""

    __tablename__ = "range_test_points"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id", ondelete="CASCADE"))
    step: Mapped[int] = mapped_column(Integer)
    lr: Mapped[float] = mapped_column(Float)
    loss: Mapped[float] = mapped_column(Float)

    __table_args__ = (UniqueConstraint("trial_id", "step", name="uq_range_test_points_trial_step"),)


class ApiKey(Base):
    """An API key: only its SHA-256 is stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)  # the public lookup part of the key
    key_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
