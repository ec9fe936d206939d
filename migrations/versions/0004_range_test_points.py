"""range tests as their own records: trials.kind and range_test_points (a range test's steps were
stored as metric rows, one fake epoch per step)

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The shapes this revision reads and writes (not the models: they move on).
trials = sa.table("trials", sa.column("id", sa.Integer), sa.column("config", sa.JSON),
                  sa.column("kind", sa.String))
metrics = sa.table("metrics", sa.column("trial_id", sa.Integer), sa.column("epoch", sa.Integer),
                   sa.column("step", sa.Integer), sa.column("lr", sa.Float), sa.column("train_loss", sa.Float),
                   sa.column("val_loss", sa.Float), sa.column("val_accuracy", sa.Float))
points = sa.table("range_test_points", sa.column("trial_id", sa.Integer), sa.column("step", sa.Integer),
                  sa.column("lr", sa.Float), sa.column("loss", sa.Float))


def upgrade() -> None:
    op.create_table(
        "range_test_points",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id", ondelete="CASCADE"), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("lr", sa.Float(), nullable=False),
        sa.Column("loss", sa.Float(), nullable=False),
        sa.UniqueConstraint("trial_id", "step", name="uq_range_test_points_trial_step"),
    )
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="training"))
    conn = op.get_bind()
    # A range test's config carries its "range_test" settings (search/strategies/_range_test.py).
    tests = [tid for tid, config in conn.execute(sa.select(trials.c.id, trials.c.config))
             if isinstance(config, dict) and "range_test" in config]
    for tid in tests:
        rows = conn.execute(sa.select(metrics.c.epoch, metrics.c.lr, metrics.c.train_loss)
                            .where(metrics.c.trial_id == tid).order_by(metrics.c.epoch)).all()
        # A step whose loss was not finite was stored without one: a curve has only finite points.
        kept = [{"trial_id": tid, "step": e, "lr": lr, "loss": loss} for e, lr, loss in rows if loss is not None]
        if kept:
            conn.execute(points.insert(), kept)
        conn.execute(metrics.delete().where(metrics.c.trial_id == tid))
        conn.execute(trials.update().where(trials.c.id == tid).values(kind="range_test"))


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(sa.select(points.c.trial_id, points.c.step, points.c.lr, points.c.loss)).all()
    if rows:
        conn.execute(metrics.insert(), [{"trial_id": t, "epoch": s, "step": s, "lr": lr, "train_loss": loss,
                                         "val_loss": None, "val_accuracy": None} for t, s, lr, loss in rows])
    op.drop_table("range_test_points")
    # Not batch mode: SQLite would copy trials into a new table and drop the old one, and the drop
    # cascades to every metric row. SQLite >= 3.35 drops a column in place.
    op.execute("ALTER TABLE trials DROP COLUMN kind")
