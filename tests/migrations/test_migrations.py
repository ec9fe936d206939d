"""Alembic: upgrade to head on every backend matches the models; downgrade and the CLI work."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from lrsearch.service.db import current_revision, make_engine, upgrade
from lrsearch.service.models import Base
from tests.conftest import REPO


def test_upgrade_head_matches_models(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    assert current_revision(engine) is not None
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # Only real schema differences count (types of the timezone-aware wrapper compare equal).
    assert [d for d in diff if d[0] != "modify_type"] == []
    names = set(inspect(engine).get_table_names())
    assert {"jobs", "trials", "metrics"} <= names
    indexes = {i["name"] for i in inspect(engine).get_indexes("trials")}
    assert {"ix_trials_job_status", "ix_trials_job_val_loss"} <= indexes
    upgrade(engine)  # idempotent
    engine.dispose()


def test_downgrade_to_base_and_back(db_url: str) -> None:
    from alembic import command

    from lrsearch.service.db import alembic_config

    engine = make_engine(db_url)
    upgrade(engine)
    command.downgrade(alembic_config(engine), "base")
    assert "jobs" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert "jobs" in inspect(engine).get_table_names()
    engine.dispose()


def test_cli_db_upgrade(db_url: str) -> None:
    out = subprocess.run([sys.executable, "-m", "lrsearch.service.cli", "db", "upgrade", "--db", db_url],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    engine = make_engine(db_url)
    assert current_revision(engine) in out.stdout
    engine.dispose()


def test_range_tests_stored_as_metric_rows_move_to_their_own_records(db_url: str) -> None:
    """0004: a range test's steps, stored by earlier versions as metric rows (one fake epoch per
    step), become range_test_points and the trial's kind says so; a training's rows stay; down
    again, the rows come back."""
    from alembic import command
    from sqlalchemy import text

    from lrsearch.service.db import alembic_config

    engine = make_engine(db_url)
    upgrade(engine, "0003")
    test_config = '{"optimizer": "sgd", "lr": 1e-07, "range_test": {"repeat": 0, "num_steps": 3}}'
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO jobs (id, name, status, spec, strategy_state, cancel_requested, created_at) "
                          "VALUES (1, 'j', 'completed', '{}', '{}', false, :now)"), {"now": datetime.now(UTC)})
        conn.execute(text("INSERT INTO trials (id, job_id, number, status, config, epochs, attempts) VALUES "
                          "(1, 1, 0, 'completed', :test, 3, 1), (2, 1, 1, 'completed', '{\"lr\": 0.1}', 2, 1)"),
                     {"test": test_config})
        conn.execute(text("INSERT INTO metrics (trial_id, epoch, step, train_loss, lr) VALUES "
                          "(1, 0, 0, 2.3, 1e-7), (1, 1, 1, 2.2, 1e-4), (1, 2, 2, NULL, 1e-1)"))
        conn.execute(text("INSERT INTO metrics (trial_id, epoch, train_loss, val_loss, lr) VALUES "
                          "(2, 0, 1.0, 0.9, 0.1), (2, 1, 0.8, 0.7, 0.1)"))
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, kind FROM trials ORDER BY id")).all() == [(1, "range_test"),
                                                                                      (2, "training")]
        assert conn.execute(text("SELECT trial_id, step, lr, loss FROM range_test_points ORDER BY step")).all() == [
            (1, 0, 1e-7, 2.3), (1, 1, 1e-4, 2.2)]  # a step without a finite loss was never a point
        assert conn.execute(text("SELECT trial_id, epoch FROM metrics ORDER BY trial_id, epoch")).all() == [
            (2, 0), (2, 1)]
    command.downgrade(alembic_config(engine), "0003")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT trial_id, epoch, train_loss FROM metrics "
                                 "ORDER BY trial_id, epoch")).all() == [(1, 0, 2.3), (1, 1, 2.2), (2, 0, 1.0), (2, 1, 0.8)]
    engine.dispose()
