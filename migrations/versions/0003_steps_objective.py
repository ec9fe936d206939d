"""step budgets, objectives, data-parallel trials: metrics.step and metrics.extra, trials.objective
and trials.workers

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("step", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("extra", sa.JSON(), nullable=True))
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("objective", sa.Float(), nullable=True))
        batch.add_column(sa.Column("workers", sa.JSON(), nullable=True))
    # Every job before this revision ranked by val_loss (min): its objective is its val_loss.
    op.execute("UPDATE trials SET objective = val_loss")
    op.create_index("ix_trials_job_objective", "trials", ["job_id", "objective"])


def downgrade() -> None:
    op.drop_index("ix_trials_job_objective", table_name="trials")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("workers")
        batch.drop_column("objective")
    with op.batch_alter_table("metrics") as batch:
        batch.drop_column("extra")
        batch.drop_column("step")
