"""The engine, sessions and schema upgrades. The SQL store is the source of truth."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from lrsearch.waiting import SAY_EVERY_SECONDS, wait_until

log = logging.getLogger(__name__)


def make_engine(url: str) -> Engine:
    """An engine tuned per backend: SQLite in WAL mode with a busy timeout; PostgreSQL pooled."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:
            # WAL lets readers (API, dashboard) proceed while the runner writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    connect_args = {"application_name": "lrsearch"} if parsed.get_backend_name() == "postgresql" else {}
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, pool_recycle=1800,
                         connect_args=connect_args)


# Errors after which the same transaction may simply be tried again: a dropped or restarted
# connection (PostgreSQL), a busy database (SQLite). Integrity errors are not among them.
_TRANSIENT = (OperationalError, InterfaceError)


class DatabaseUnavailable(Exception):
    """The store does not answer; the message says where it was looked for."""


def wait_for_database(engine: Engine, wait_seconds: float, say_every: float = SAY_EVERY_SECONDS) -> None:
    """Block until the store takes a connection (a database container may start after the service),
    saying so every few seconds. Raises DatabaseUnavailable after ``wait_seconds``."""
    if engine.url.get_backend_name() == "sqlite":
        return  # a file: nothing to wait for (and none is created before Ray is known to answer)
    where = engine.url.render_as_string()  # the password masked

    def refused() -> str | None:
        try:
            with engine.connect():
                return None
        except _TRANSIENT as exc:
            text = str(exc.orig or exc).strip()
            return text.splitlines()[0] if text else type(exc).__name__

    wait_until(refused, wait_seconds, f"the database at {where}", log=log, say_every=say_every,
               give_up=lambda reason: DatabaseUnavailable(
                   f"the database at {where} does not answer ({reason}; waited {wait_seconds:g} s): start it, "
                   "or point --db (LRSEARCH_DATABASE_URL) at one"))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine):
    from alembic.config import Config

    from lrsearch import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Alembic upgrade on this engine (SQLite in batch mode, see migrations/env.py)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


T = TypeVar("T")

def run_tx(sessions: sessionmaker[Session], fn: Callable[[Session], T], attempts: int = 8,
           first_delay: float = 0.05) -> T:
    """Run ``fn`` in a transaction, retrying it on a lost connection. ``fn`` must be safe to
    repeat (every writer in the runner checks what is already there)."""
    delay = first_delay
    for attempt in range(attempts):
        try:
            with sessions.begin() as session:
                return fn(session)
        except _TRANSIENT as exc:
            if attempt == attempts - 1:
                raise
            log.warning("database error (%s); retrying in %.2f s", type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise AssertionError("unreachable")
