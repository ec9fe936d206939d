"""Schemathesis against the service's own OpenAPI schema: no generated request gets a 5xx."""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from lrsearch.service.app import create_app
from lrsearch.service.config import Settings

_db = Path(tempfile.mkdtemp()) / "fuzz.db"
app = create_app(Settings(database_url=f"sqlite:///{_db}", run_jobs=False))
# The lifespan (migrations, sessions) runs once for the module; schemathesis calls the app in-process.
_lifespan = TestClient(app)
_lifespan.__enter__()
atexit.register(_lifespan.__exit__, None, None, None)

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
