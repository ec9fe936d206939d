"""Alembic: upgrade to head on every backend matches the models; downgrade and the CLI work."""

from __future__ import annotations

import subprocess
import sys

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
